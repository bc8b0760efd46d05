"""The dashboard's own stylesheet and script (no third-party code), served at /static/."""
