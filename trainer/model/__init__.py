"""InceptionV4 (MindCV-compatible), fine-tuning from weights, and the lr schedule, optimizer and loss."""
