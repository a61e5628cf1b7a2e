"""One training worker: building a run, the loop and its collaborators, the compiled step, evaluation."""
