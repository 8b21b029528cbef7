"""``python -m onnxcompress``: the command line without the console script (e.g. a venv that is not activated)."""

from onnxcompress.cli import main

if __name__ == "__main__":
    main()
