import sys

from datasets.check import main

sys.exit(main())
