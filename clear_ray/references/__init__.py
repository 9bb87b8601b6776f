"""Original and Gold, the references every trial is measured against, in one direction:
brought checkpoints -> recipes -> Ray jobs -> prepare (what a search calls)."""
