"""Background work: the one worker recipe (runner) and the workers built on it."""
