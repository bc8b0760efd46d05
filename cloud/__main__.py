"""`python -m cloud` is `edge-cloud`."""

from cloud.cli import main

raise SystemExit(main())
