"""The composition root: settings, the one bootstrap that builds the hub from them, the
process runner, and the command line. Only entry points import from here."""
