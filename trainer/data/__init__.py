"""Training data: `folder` lists an ImageFolder split (and defines DataError), `check` stops bad data before a
run, `transforms` holds the image transforms and the in-graph normalizer, `augment_policy` reads auto_augment
strings, `pipeline` builds the sharded MindSpore datasets, `demo` writes the synthetic demo ImageFolder."""
