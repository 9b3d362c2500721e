"""Sub-commands of `mammosynth`, one module each (see `MammoSynthLogic.cli`)."""
