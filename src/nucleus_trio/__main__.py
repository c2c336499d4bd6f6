"""``python -m nucleus_trio``: the same as the ``nucleus-trio`` command."""

from nucleus_trio._entry import main  # first: blocks the forwarded signals on import

if __name__ == "__main__":
    main()
