from ppx_desktop.cli import main

raise SystemExit(main())
