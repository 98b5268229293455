"""The build report: its JSON Schema, the HTML page and the terminal summary rendered from report.json."""

from edgekit.report.html import render_html, write_html
from edgekit.report.schema import ReportSchemaError, load_report, upgrade_report, validate_report
from edgekit.report.summary import format_summary

__all__ = ["ReportSchemaError", "format_summary", "load_report", "render_html", "upgrade_report", "validate_report",
           "write_html"]
