"""Developer tools run from the command line: the packaged self-test and the screenshots."""
