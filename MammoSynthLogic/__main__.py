from MammoSynthLogic.cli import main

raise SystemExit(main())
