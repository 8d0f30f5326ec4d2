"""The soak harness (bench/soak.py): a short run under chaos, and the harness failing on purpose."""
