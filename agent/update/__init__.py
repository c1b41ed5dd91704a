"""Software updates on the box: download, verify, install a slot, prove it healthy or go back."""
