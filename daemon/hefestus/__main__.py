import sys

from hefestus.cli import main

sys.exit(main())
