"""The `sarlo` command line: the commands (main), how a build is run from them (run), the
tools beside the build (tools), the demo and the figures of a release."""
