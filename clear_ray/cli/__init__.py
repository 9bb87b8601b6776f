"""The command lines: each module parses its flags and calls the code that does the work.

``flags`` is the plumbing they share: flags that address dotted config paths.
"""
