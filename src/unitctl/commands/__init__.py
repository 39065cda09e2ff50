"""One module per command: typed settings in, a result out; cli.py declares the options and calls ``run``."""
