"""One module per command group; carsctl.app composes them."""
