"""`incv4 report`: a run's curves (loss, lr, throughput and data wait against the step; top-1 and top-5 against
the epoch), its recipe and a summary, as one self-contained HTML file or one PNG. The data comes from a run's
history.jsonl (`history_source.py`) or from Prometheus for a cluster job (`prometheus_source.py`); `plots.py`
draws, `html_page.py` writes the page, `command.py` is the click command."""
