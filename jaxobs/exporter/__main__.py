"""``python -m jaxobs.exporter``: the container entrypoint (skips the CLI's other sub-commands)."""

from jaxobs.exporter.cli import exporter_command

if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    exporter_command(prog_name="jaxobs exporter")
