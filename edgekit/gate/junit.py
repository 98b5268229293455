"""JUnit XML for CI test views: one testsuite, one testcase per gate check, a <failure> per failing check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edgekit.artifacts import write_atomically


def junit_xml(result) -> str:
    """``result`` is a GateResult; every check becomes a testcase named by its kind and subject; a "not
    comparable" check is a skipped testcase."""
    checks = result.checks
    failures, skipped = len(result.failures()), len(result.not_comparable())
    suites = ET.Element("testsuites", name="edgekit gate", tests=str(len(checks)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=f"edgekit gate {result.report_path}",
                          tests=str(len(checks)), failures=str(failures), errors="0", skipped=str(skipped))
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgekit.gate.{check.kind}", name=check.name or check.title)
        if check.failed:
            failure = ET.SubElement(case, "failure", message=check.line(), type=check.kind)
            failure.text = check.line()
        elif not check.passed:  # not comparable: shown as skipped, with the reason
            ET.SubElement(case, "skipped", message=check.line())
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result, path: Path) -> Path:
    text = junit_xml(result)
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
