"""Helpers of the SlicerMammoSynth module: MRML conversion, the background engine runner, study loading.

A package beside the module file because Slicer's scripted-module factory loads every `.py` file directly in a
module folder as a module of its own.
"""
