"""End-to-end tests under podman: run by `make e2e`, not by `make unit`."""
