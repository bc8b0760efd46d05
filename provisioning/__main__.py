"""`python -m provisioning` is `edgectl`."""

import sys

from provisioning.cli import main

sys.exit(main())
