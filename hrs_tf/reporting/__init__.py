"""Reports under ``docs/``: markdown tables (here), plots (:mod:`.plots`), the training report
(:mod:`.training_report`) and the numbers the papers report (:mod:`.paper_values`)."""


def markdown_table(headers, rows):
    """A GitHub-flavoured markdown table; cells are formatted with ``str``."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def read_markdown_tables(text):
    """The tables of a markdown page as [(heading, headers, rows)], the inverse of :func:`markdown_table`:
    ``heading`` is the title of the nearest ``#`` heading above the table (without its ``#``), cells are stripped
    strings. For reading the numbers of a committed report back (e.g. to redraw its figures)."""
    tables, heading, current, separator_due = [], None, None, False
    for line in text.splitlines():
        stripped = line.strip()
        if not (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1):
            current = None
            if stripped.startswith("#"):
                heading = stripped.lstrip("#").strip()
            continue
        cells = [cell.strip() for cell in stripped[1:-1].split("|")]
        if current is None:
            current, separator_due = (heading, cells, []), True
            tables.append(current)
        elif separator_due:  # the |---|---| line under the headers
            separator_due = False
        else:
            current[2].append(cells)
    return tables


def percent(value, digits=2):
    return f"{100 * value:.{digits}f}%"


def fmt(value, digits=3):
    """``value`` with ``digits`` decimals, or ``-`` for a missing (None) value."""
    return "-" if value is None else f"{value:.{digits}f}"
