"""``python -m mmfinereason …`` — also what ``accelerate launch -m mmfinereason sft RECIPE`` runs."""

import sys

from mmfinereason.cli.main import main

sys.exit(main())
