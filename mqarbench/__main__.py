import sys

from mqarbench.cli import main

sys.exit(main())
