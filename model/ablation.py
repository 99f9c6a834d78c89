"""The paper's Table 2 (§5.5) as named rows of switches, and the rule on which switches go together.

Torch-free: the CLI validates and lists the rows without loading a model. A row's switches are the
`vidmusician train` options of the same names (`flows.training.run.TrainRun` fields):

    t5_from_scratch  From T5 off: a random T5 of the same shape, trained in full (no LoRA)
    rhythm           RCM: the rhythm module exists (off: the semantic module alone, one stage)
    init_technique   IT: zero O + identity L_j (off: PyTorch's default Linear init)
    one_stage        TS off: semantic and rhythm trained together from the start
    rhythm_source    AT: "all_tokens" (local features, the paper's) or "global" (the pooled CLS similarity)
    rhythm_style     RM: "vidmusician" (O + L_j, backbone frozen) or "musicongen" (first self-attention
                     of each block trained, one shared O)

The two references train nothing: "backbone" is the frozen backbone alone with no video conditioning
(null semantic condition, no rhythm); "untrained" is the full stage-2 model at its initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Reference = Literal["backbone", "untrained"]


class AblationError(ValueError):
    """Switches that make no sense together; the message says what to pass instead."""


@dataclass(frozen=True)
class Switches:
    """The Table 2 switches, named as `vidmusician train`'s options (TrainRun fields)."""

    t5_from_scratch: bool = False
    rhythm: bool = True
    init_technique: bool = True
    one_stage: bool = False
    rhythm_source: str = "all_tokens"
    rhythm_style: str = "vidmusician"

    def __post_init__(self) -> None:
        check_switches(self)

    def columns(self) -> dict[str, bool | None]:
        """Table 2's ✓/✗ columns; None where a column does not apply (no rhythm module: no IT, AT, RM)."""
        r = self.rhythm
        return {"From T5": not self.t5_from_scratch, "RCM": r,
                "IT": self.init_technique if r else None, "TS": (not self.one_stage) if r else None,
                "AT": (self.rhythm_source == "all_tokens") if r else None,
                "RM": (self.rhythm_style == "vidmusician") if r else None}

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_switches(s: Switches, stages: tuple[int, ...] | None = None) -> None:
    """Refuse combinations that make no sense, saying what to pass instead. `stages`: the run's stages
    (None: not checked)."""
    if s.rhythm_source not in ("all_tokens", "global"):
        raise AblationError(f"--rhythm-source must be all_tokens or global, got {s.rhythm_source!r}")
    if s.rhythm_style not in ("vidmusician", "musicongen"):
        raise AblationError(f"--rhythm-style must be vidmusician or musicongen, got {s.rhythm_style!r}")
    if not s.rhythm:
        given = [flag for flag, on in (("--rhythm-source global", s.rhythm_source == "global"),
                                       ("--rhythm-style musicongen", s.rhythm_style == "musicongen"),
                                       ("--no-init-technique", not s.init_technique),
                                       ("--one-stage", s.one_stage)) if on]
        if given:
            raise AblationError(f"--no-rhythm leaves no rhythm module for {', '.join(given)} to change: drop "
                                f"{' and '.join(given)}, or drop --no-rhythm")
        if stages is not None and 2 in stages:
            raise AblationError("--no-rhythm trains the semantic module alone, which is stage 1: pass --stage 1 "
                                "(stage 2 would only go on training the same modules at a lower lr)")
    if s.one_stage and stages is not None and stages != (2,):
        raise AblationError("--one-stage trains semantic and rhythm together in a single stage: drop --stage "
                            f"(got stages {stages})")


@dataclass(frozen=True)
class Row:
    """One Table 2 row: its switches, or a reference that trains nothing."""

    name: str
    title: str
    switches: Switches = field(default_factory=Switches)
    reference: Reference | None = None
    paper: Mapping[str, float] | None = None  # the paper's Table 2 numbers for this row, where it has one

    @property
    def stages(self) -> tuple[int, ...]:
        """The `train --stage` this row runs: () for a reference, (1,) without a rhythm module, (2,) for one stage."""
        if self.reference is not None:
            return ()
        if not self.switches.rhythm:
            return (1,)
        return (2,) if self.switches.one_stage else (1, 2)


def _paper(fd: float, kl: float, imagebind: float, clap: float, rhythm: float) -> Mapping[str, float]:
    return MappingProxyType({"fd": fd, "kl": kl, "imagebind": imagebind, "clap": clap, "rhythm": rhythm})


_ROWS = (
    # the paper's first row trains T5 from scratch without the rhythm module (it is compared to "no-rcm")
    Row("no-t5", "T5 from scratch (no RCM)", Switches(t5_from_scratch=True, rhythm=False),
        paper=_paper(36.62, 1.564, 0.1480, 0.2690, 0.1392)),
    Row("no-rcm", "no rhythm module", Switches(rhythm=False), paper=_paper(30.19, 1.107, 0.1872, 0.3536, 0.1644)),
    Row("no-it", "rhythm layers at PyTorch's default init", Switches(init_technique=False),
        paper=_paper(81.70, 1.613, 0.0803, 0.1567, 0.1283)),
    Row("one-stage", "semantic and rhythm trained together", Switches(one_stage=True),
        paper=_paper(33.57, 1.369, 0.1735, 0.3614, 0.2431)),
    Row("at", "rhythm from the pooled CLIP embedding", Switches(rhythm_source="global"),
        paper=_paper(29.28, 1.156, 0.1993, 0.4126, 0.2346)),
    Row("musicongen-no-it", "MusiConGen style, default init", Switches(rhythm_style="musicongen", init_technique=False),
        paper=_paper(96.13, 2.184, 0.1066, 0.0933, 0.1109)),
    Row("musicongen", "MusiConGen style", Switches(rhythm_style="musicongen"),
        paper=_paper(29.23, 1.106, 0.1892, 0.3731, 0.1498)),
    Row("full", "VidMusician", Switches(), paper=_paper(27.46, 1.112, 0.2158, 0.4162, 0.2516)),
    Row("backbone", "frozen backbone alone (no video)", Switches(rhythm=False), reference="backbone"),
    Row("untrained", "stage-2 model at initialisation", Switches(), reference="untrained"),
)
ROWS: Mapping[str, Row] = MappingProxyType({r.name: r for r in _ROWS})
TABLE2 = tuple(r.name for r in _ROWS if r.reference is None)  # the paper's rows, in its order
REFERENCES = tuple(r.name for r in _ROWS if r.reference is not None)


def parse_rows(text: str | None) -> tuple[str, ...]:
    """"full,no-rcm" -> ("full", "no-rcm"); None or "all": every Table 2 row; "all+refs": and the references.
    An unknown name is refused with the known ones."""
    if text is None or text.strip() == "all":
        return TABLE2
    if text.strip() == "all+refs":
        return TABLE2 + REFERENCES
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ROWS]
    if unknown or not names:
        raise AblationError(f"unknown row(s) {', '.join(unknown) or '(none given)'}; choose from "
                            f"{', '.join(ROWS)} (or all, all+refs)")
    return names
