"""The Prometheus exporter of a training run (the names and labels are in incv4.trainer.contract)."""
