"""`python -m kfadapter.sandbox --port 8888`."""

from kfadapter.sandbox import main

main()
