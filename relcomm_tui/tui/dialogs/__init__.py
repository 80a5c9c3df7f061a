"""Modal dialogs, one per module, each returning its answer through dismiss()."""
