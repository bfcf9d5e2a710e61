"""``python -m mmfinereason …`` — also what ``accelerate launch -m mmfinereason sft RECIPE`` runs."""

import sys

from .cli import main

sys.exit(main())
