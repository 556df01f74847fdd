"""Reports under ``docs/``: markdown tables (here), plots (:mod:`.plots`), the training report
(:mod:`.training_report`) and the numbers the papers report (:mod:`.paper_values`)."""


def markdown_table(headers, rows):
    """A GitHub-flavoured markdown table; cells are formatted with ``str``."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)



def percent(value, digits=2):
    return f"{100 * value:.{digits}f}%"


def fmt(value, digits=3):
    """``value`` with ``digits`` decimals, or ``-`` for a missing (None) value."""
    return "-" if value is None else f"{value:.{digits}f}"
