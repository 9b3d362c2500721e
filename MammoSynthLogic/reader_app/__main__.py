from MammoSynthLogic.reader_app import main

raise SystemExit(main())
