package console

// routesDeadLetters registers its pages.
func (c *Console) routesDeadLetters() {}
