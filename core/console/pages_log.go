package console

// routesLog registers its pages.
func (c *Console) routesLog() {}
