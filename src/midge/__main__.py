from midge.cli import main

raise SystemExit(main())
