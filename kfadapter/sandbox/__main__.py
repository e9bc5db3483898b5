"""`python -m kfadapter.sandbox --port 8888`."""

from . import main

main()
