"""The stress, soak, fault and bad-input suite of nucleus-trio (see ``stress.py``)."""
