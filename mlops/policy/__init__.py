"""SRE policy rules over saved plans: declarative YAML rules, evaluated purely over a Plan."""
