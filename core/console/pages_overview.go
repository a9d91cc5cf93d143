package console

import "strconv"

// routesOverview registers the overview and the configuration pages.
func (c *Console) routesOverview() {
	c.console("GET /console/{$}", c.overview)
	c.console("GET /console/status", c.statusPage)
	c.console("POST /console/reload", c.reload)
}

// overview is the console's start page.
func (c *Console) overview(rq *request) {
	rq.render("overview", page{Title: "Overview", Nav: "overview"})
}

func itoa(n int) string { return strconv.Itoa(n) }
