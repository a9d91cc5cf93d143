package console

// routesApps registers its pages.
func (c *Console) routesApps() {}
