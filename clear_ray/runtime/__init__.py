"""The only package that talks to Ray itself: the cluster, Train runs, their placement groups,
the driver's tasks, storage and staging. Ray's and Optuna's private API is used in
``ray_compat.py`` alone."""
