"""One module per command that is not training, each holding the command's Hydra task (the function
that cli.py's table names) beside the functions the Python API calls (api.py)."""
