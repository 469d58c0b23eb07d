#!/usr/bin/env python3
"""Check every engine symbol the Unreal plugin uses against an Unreal Engine source tree.

No engine can be built here, so the plugin's engine-facing C++ cannot be compiled; this is the next best thing. It
parses the plugin's C++ (``Source/**/*.h|cpp``), its ``*.Build.cs`` and its shaders (``Shaders/**/*.usf|ush``),
lists every engine symbol they use, and looks each one up in the tree given by ``--engine-source``:

* ``#include`` paths (the file exists, and its module is a dependency of the plugin's module, directly or through a
  dependency's public dependencies, as UnrealBuildTool resolves include paths);
* types (``F*``/``U*``/``A*``/``I*``/``E*``/``T*``: a class, struct, enum, alias or delegate declaration);
* members used through ``Type::Member`` or through variables whose type the checker can follow
  (``GraphBuilder.CreateTexture``, ``GEngine->GameViewport->Viewport``), looked up in the class body and its bases;
* free and namespaced functions, macros and constants (``UE_LOG``, ``PF_R8G8B8A8``, ``ECVF_Default``);
* every ``override``: a virtual function with the same parameter types must exist in a base class (the signature
  changes between engine versions are exactly what breaks a plugin silently);
* the modules of ``*.Build.cs``;
* shaders: ``/Engine/...`` includes, every function and macro a shader calls must be defined in a file its includes
  reach, and members of the ``View`` / ``SceneTexturesStruct`` uniform buffers and of engine shader structs.

Version guards are understood: ``#if``/``#elif``/``#else`` on ``ENGINE_MAJOR_VERSION``, ``ENGINE_MINOR_VERSION``,
``UE_VERSION_NEWER_THAN`` or ``UE_VERSION_OLDER_THAN`` are evaluated for the tree's version (its
``Runtime/Launch/Resources/Version.h``, or ``--engine-version``); a symbol used only in a branch for another version
is reported as ``other-version`` (with where it was found, if it was), never as a failure.

The tree may be a subset of the engine: ``--fetch-list`` prints the engine files the check needs (with
``--engine-source`` of a full tree: exactly the files that gave an answer, so that checking a subset made of them
gives the same result; with only ``--engine-index``, a list of a tree's paths such as ``git ls-tree -r --name-only``
prints, the files that list resolves: the version header, the modules' Build.cs, the includes, and the files the
subset given by ``--engine-source`` includes, for the next round).

Prints a table ``KIND  SYMBOL  WHERE  STATUS`` and a summary; exits 1 when something is MISSING, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PLUGIN = Path(__file__).resolve().parent.parent / "engine_plugins" / "unreal" / "NeuralRenderBridge"
VERSION_H = "Engine/Source/Runtime/Launch/Resources/Version.h"
HEADER_EXTS = (".h", ".hpp", ".inl")
SHADER_EXTS = (".ush", ".usf")

# ------------------------------------------------------------------------------------------------ vocabulary
CPP_KEYWORDS = frozenset("""
alignas alignof and asm auto bool break case catch char char8_t char16_t char32_t class const consteval constexpr
constinit const_cast continue co_await co_return co_yield decltype default delete do double dynamic_cast else enum
explicit export extern false float for friend goto if inline int long mutable namespace new noexcept not nullptr
operator or private protected public register reinterpret_cast requires return short signed sizeof static
static_assert static_cast struct switch template this thread_local throw true try typedef typeid typename union
unsigned using virtual void volatile wchar_t while final override size_t
""".split())
BUILTIN_TYPES = frozenset("bool char char8_t char16_t char32_t double float int long short signed unsigned wchar_t "
                          "size_t auto".split())
#: Standard library names the plugin uses, and libnrb's C ABI: not engine symbols.
NOT_ENGINE_PREFIXES = ("std", "nrb_", "NRB_", "nrbglue")
STD_FUNCTIONS = frozenset("""
memcpy memset memchr memcmp strchr strcmp strlen snprintf printf fabs atan tan sqrt isinf assign emplace_back
push_back insert size data c_str empty begin end find substr load store sizeof static_cast reinterpret_cast
const_cast move forward
""".split())
#: C library macros.
STD_MACROS = frozenset("INFINITY NAN NULL EOF FLT_MAX DBL_MAX INT_MAX UINT_MAX SIZE_MAX".split())
#: Integer typedefs of UE's Platform.h the plugin uses: checked as types.
UE_INT_TYPES = frozenset("uint8 uint16 uint32 uint64 int8 int16 int32 int64 TCHAR ANSICHAR UTF8CHAR".split())
#: UObject reflection markup: the macro is checked, its specifiers are read by UnrealHeaderTool, not the compiler.
UHT_MARKUP = frozenset("UCLASS USTRUCT UENUM UFUNCTION UPROPERTY UMETA UINTERFACE".split())
#: Smart pointers: ``->`` on them reaches their first template argument.
POINTER_WRAPPERS = frozenset("""TUniquePtr TSharedPtr TSharedRef TWeakPtr TRefCountPtr TObjectPtr TWeakObjectPtr
TStrongObjectPtr TRDGUniformBufferRef TUniformBufferRef""".split())
#: Containers: ``[i]`` on them gives their first template argument.
CONTAINERS = frozenset("TArray TStaticArray TArrayView TConstArrayView".split())
HLSL_WORDS = frozenset("""
if else for while do return break continue switch case default struct void in out inout uniform static const
groupshared numthreads true false bool int uint float half double min16float float2 float3 float4 int2 int3 int4
uint2 uint3 uint4 half2 half3 half4 bool2 bool3 bool4 float2x2 float3x3 float4x4 float4x3 float3x4 Texture2D
Texture2DArray Texture3D TextureCube RWTexture2D RWBuffer Buffer StructuredBuffer RWStructuredBuffer SamplerState
abs acos all any asfloat asint asuint atan atan2 ceil clamp cos cross ddx ddy degrees determinant distance dot exp
exp2 floor fmod frac isinf isnan lerp length log log2 max min mul normalize pow radians rcp reflect round rsqrt
saturate sign sin smoothstep sqrt step tan transpose trunc Load Sample SampleLevel SampleGrad GetDimensions
noperspective nointerpolation precise SV_DispatchThreadID SV_Target0 SV_Position SV_POSITION TEXCOORD0 select
""".split())
#: Shader uniform buffers the plugin reads, and the C++ struct that declares their members.
SHADER_UNIFORM_BUFFERS = {"View": "FViewUniformShaderParameters", "SceneTexturesStruct": "FSceneTextureUniformParameters"}

IDENT = re.compile(r"[A-Za-z_]\w*")
#: How the scanners record a use: add(kind, name, line, **detail).
AddFn = Callable[..., None]
#: Statuses that fail the check (exit 1).
FAILURES = ("MISSING", "DEPENDENCY", "DEPRECATED")
TOKEN_BYTES = re.compile(rb"[A-Za-z_]\w*")


# ------------------------------------------------------------------------------------------------ source text helpers
_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def strip_comments(text: str) -> str:
    """Comments replaced by spaces, newlines kept (line numbers stay right); string literals untouched."""
    def repl(m: re.Match[str]) -> str:
        tok = m.group(0)
        return re.sub(r"[^\n]", " ", tok) if tok.startswith("/") else tok
    return _COMMENT_OR_STRING.sub(repl, text)


def blank_strings(text: str) -> str:
    """String and character literals' contents replaced by spaces: identifiers in them are not symbols."""
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"',
                  text)


def occurrences(text: str, name: str) -> Iterator[int]:
    """Start offsets of ``name`` as a whole word in ``text`` (str.find: much faster than a regex here)."""
    pos, n = text.find(name), len(name)
    while pos >= 0:
        end = pos + n
        if (pos == 0 or not (text[pos - 1].isalnum() or text[pos - 1] == "_")) and (
                end >= len(text) or not (text[end].isalnum() or text[end] == "_")):
            yield pos
        pos = text.find(name, end)


def matching_brace(text: str, open_at: int) -> int:
    """Index just past the ``}`` matching the ``{`` at ``open_at`` (end of text when unbalanced)."""
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def shallow_body(body: str) -> str:
    """A class body with the inside of every nested ``{...}`` blanked (same length, newlines kept): only the class's
    own declarations remain, not the code of inline methods."""
    out = []
    depth = 0
    for ch in body:
        if ch == "}":
            depth -= 1
        out.append(ch if depth <= 0 or ch == "\n" else " ")
        if ch == "{":
            depth += 1
    return "".join(out)


def split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets of any kind."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


# ------------------------------------------------------------------------------------------------ version guards
class Version:
    """An engine version, for evaluating guards."""

    def __init__(self, major: int, minor: int, patch: int) -> None:
        self.major, self.minor, self.patch = major, minor, patch

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


def evaluate_condition(cond: str, version: Version, defined: frozenset[str] = frozenset()) -> bool | None:
    """Three-valued evaluation of a preprocessor condition: True/False when it depends only on the engine version
    (and literals), None when it depends on anything else (``WITH_EDITOR``, ``NRB_STATS_VERSION``, ...)."""
    text = cond
    for macro, newer in (("UE_VERSION_NEWER_THAN", True), ("UE_VERSION_OLDER_THAN", False)):
        def repl(m: re.Match[str], newer: bool = newer) -> str:
            want = tuple(int(x) for x in m.groups())
            have = version.key()
            return "1" if (have > want if newer else have < want) else "0"
        text = re.sub(rf"\b{macro}\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)", repl, text)
    text = re.sub(r"\bENGINE_MAJOR_VERSION\b", str(version.major), text)
    text = re.sub(r"\bENGINE_MINOR_VERSION\b", str(version.minor), text)
    text = re.sub(r"\bENGINE_PATCH_VERSION\b", str(version.patch), text)
    text = re.sub(r"\bdefined\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in defined else "?", text)
    tokens: list[str] = re.findall(r"\d+|\w+|&&|\|\||==|!=|<=|>=|[!<>()?]", text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> int | None:
        tok = take() if peek() is not None else ")"
        if tok == "(":
            value = disjunction()
            if peek() == ")":
                take()
            return value
        if tok == "!":
            v = primary()
            return None if v is None else int(not v)
        if tok.isdigit():
            return int(tok)
        return None  # "?" or an identifier not known here

    def comparison() -> int | None:
        left = primary()
        while peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = take()
            right = primary()
            if left is None or right is None:
                left = None
                continue
            left = int({"==": left == right, "!=": left != right, "<": left < right, ">": left > right,
                        "<=": left <= right, ">=": left >= right}[op])
        return left

    def conjunction() -> int | None:
        values = [comparison()]
        while peek() == "&&":
            take()
            values.append(comparison())
        if any(v == 0 for v in values):
            return 0
        return None if any(v is None for v in values) else 1

    def disjunction() -> int | None:
        values = [conjunction()]
        while peek() == "||":
            take()
            values.append(conjunction())
        if any(v not in (0, None) for v in values):
            return 1
        return None if any(v is None for v in values) else 0

    result = disjunction()
    return None if result is None else bool(result)


def guards_by_line(text: str) -> list[list[str]]:
    """For each line (1-based index), the conditions that must hold for it to be compiled (``#if`` nesting, with
    ``#elif``/``#else`` turned into the negation of the earlier branches)."""
    out: list[list[str]] = [[]]
    stack: list[tuple[list[str], str]] = []  # (earlier branch conditions, current branch condition)
    for line in text.split("\n"):
        m = re.match(r"\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", line)
        current = [c for _, c in stack]
        out.append(current)
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).strip()
        if kind in ("if", "ifdef", "ifndef"):
            cond = rest if kind == "if" else (f"defined({rest})" if kind == "ifdef" else f"!defined({rest})")
            stack.append(([cond], cond))
        elif kind == "elif" and stack:
            earlier, _ = stack[-1]
            cond = " && ".join([f"!({c})" for c in earlier] + [f"({rest})"])
            stack[-1] = (earlier + [rest], cond)
        elif kind == "else" and stack:
            earlier, _ = stack[-1]
            stack[-1] = (earlier, " && ".join(f"!({c})" for c in earlier))
        elif kind == "endif" and stack:
            stack.pop()
    return out


# ------------------------------------------------------------------------------------------------ the engine tree
@dataclass
class Hit:
    """Where a symbol was found: a file of the engine tree (relative), a line, and how sure the lookup is."""

    path: str
    line: int
    how: str = "declared"  # declared | member | by-name | module | ubt | ...
    overloads: list[int] = field(default_factory=list)  # lines of every declaration of that name (overloads)

    def where(self) -> str:
        return f"{self.path}:{self.line}"


class EngineTree:
    """The engine source tree (full or a subset): its headers, shaders, Build.cs and UnrealBuildTool sources, with a
    token index so that each lookup reads only the files that contain the name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("Intermediate", "Binaries")]
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if name.endswith(HEADER_EXTS + SHADER_EXTS) or name.endswith(".Build.cs") or (
                        name.endswith(".cs") and "/UnrealBuildTool/" in f"/{rel}"):
                    self.files.append(rel)
        self.files.sort()
        self._postings: dict[bytes, array[int]] = {}
        self._text: dict[str, str] = {}
        self.consulted: set[str] = set()  # files that gave an answer (for --fetch-list)
        self.preferred_modules: set[str] = set()  # the modules the plugin can include from: their files come first
        self._indexed = False

    # -- reading
    def text(self, rel: str) -> str:
        if rel not in self._text:
            raw = (self.root / rel).read_bytes().decode("utf-8", errors="replace")
            self._text[rel] = strip_comments(raw)
        return self._text[rel]

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def _index(self) -> None:
        for fid, rel in enumerate(self.files):
            data = (self.root / rel).read_bytes()
            for tok in set(TOKEN_BYTES.findall(data)):
                self._postings.setdefault(tok, array("I")).append(fid)
        self._indexed = True

    def files_with(self, name: str, exts: tuple[str, ...] = HEADER_EXTS) -> list[str]:
        """Files of the tree that contain the token ``name`` (headers by default), Public/Classes first."""
        if not self._indexed:
            self._index()
        hits = [self.files[i] for i in self._postings.get(name.encode(), array("I"))]
        hits = [h for h in hits if h.endswith(exts)]
        stem = name[1:].lower() if re.match(r"[FUAIET][A-Z]", name) else name.lower()

        def rank(p: str) -> tuple[int, int, int, bool, str]:
            base = p.rsplit("/", 1)[-1].split(".")[0].lower()
            module = re.search(r"([^/]+)/(?:Public|Classes|Internal|Private)/", p)
            reachable = module is not None and module.group(1) in self.preferred_modules
            return (0 if reachable else 1, 0 if base == stem else 1, 0 if re.search(r"/(Public|Classes)/", p) else 1,
                    "/Windows/" not in p, p)
        return sorted(hits, key=rank)

    def suffix_matches(self, suffix: str) -> list[str]:
        return [f for f in self.files if f == suffix or f.endswith("/" + suffix)]

    def version(self) -> Version | None:
        if not self.exists(VERSION_H):
            return None
        text = self.text(VERSION_H)
        nums = [re.search(rf"#define\s+ENGINE_{k}_VERSION\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
        if not all(nums):
            return None
        self.consulted.add(VERSION_H)
        return Version(*(int(m.group(1)) for m in nums if m))


# ------------------------------------------------------------------------------------------------ declarations
@dataclass
class TypeDecl:
    """A class, struct, enum, alias or delegate found in a source file (engine or plugin)."""

    name: str
    path: str
    line: int
    kind: str  # class | struct | enum | union | alias | delegate | uniform
    bases: list[str] = field(default_factory=list)
    body: str = ""  # the text between the braces (classes, structs, enums)
    target: str = ""  # aliases: what the name stands for


#: "class ENGINE_API " just before a type's name, and what follows the name up to its body or ";".
TYPE_DECL_BACK = re.compile(r"(?:^|[;{}\s])(class|struct|union|enum\s+class|enum\s+struct|enum)\s+"
                            r"(?:alignas\s*\([^)]*\)\s*)?(?:(?:[A-Z0-9_]+_API|UE_DEPRECATED\([^)]*\)|DEPRECATED\([^)]*\)|"
                            r"MS_ALIGN\([^)]*\)|GCC_ALIGN\([^)]*\))\s+)*$")
TYPE_DECL_AHEAD = re.compile(r"\s*(?:final\s*)?(<[^;{]*?>\s*)?(:[^;{]*?)?\s*(\{|;)")


class Declarations:
    """Finds type, member, function and macro declarations in the plugin's own sources first, then the engine's."""

    def __init__(self, engine: EngineTree, plugin_files: dict[str, str]) -> None:
        self.engine = engine
        self.plugin_files = plugin_files  # plugin-relative path -> comment-stripped text
        self._types: dict[str, list[TypeDecl]] = {}
        self._class_spans: dict[str, list[tuple[int, int]]] = {}

    def _sources(self, name: str) -> Iterator[tuple[str, str, bool]]:
        for path, text in self.plugin_files.items():
            if re.search(rf"\b{re.escape(name)}\b", text):
                yield path, text, True
        for path in self.engine.files_with(name):
            yield path, self.engine.text(path), False

    def find_type(self, name: str) -> TypeDecl | None:
        """The first full declaration of ``name`` (plugin first), else a forward declaration, else None."""
        found = self.find_types(name)
        return found[0] if found else None

    def find_types(self, name: str) -> list[TypeDecl]:
        """Every full declaration of ``name`` in the first file that has one (a primary template and its
        specializations, ``TDelegate`` and ``TDelegate<R(P...)>``), or a forward declaration alone."""
        if name in self._types:
            cached = self._types[name]
            return cached if isinstance(cached, list) else []
        self._types[name] = []  # recursion guard
        found = self._find_types(name)
        self._types[name] = found
        for decl in found:
            if not decl.path.startswith("plugin:"):
                self.engine.consulted.add(decl.path)
        return found

    def _find_types(self, name: str) -> list[TypeDecl]:
        esc = re.escape(name)
        namespace = re.compile(rf"\bnamespace\s+(?:\w+::)*{esc}\s*\{{")
        forward: TypeDecl | None = None
        namespaces: list[TypeDecl] = []
        nested_fallback: list[TypeDecl] = []
        sources = list(self._sources(name))
        # 1. a class, struct, enum or union definition (all of them in the first file that has one: a primary
        #    template and its specializations); namespaces are open, so every block counts
        for path, text, own in sources:
            if path.endswith("/NoExportTypes.h"):
                continue  # UnrealHeaderTool's mirror declarations (#if !CPP), not what C++ compiles
            where = f"plugin:{path}" if own else path
            full: list[TypeDecl] = []
            for start in occurrences(text, name):
                # cheap: only where the name occurs, look back for "class X_API" and ahead for "... {" or ";"
                previous = text[max(0, start - 80):start].rstrip()
                if not previous.endswith(("class", "struct", "union", "enum", "_API", ")")):
                    continue
                back = TYPE_DECL_BACK.search(text, max(0, start - 200), start)
                ahead = TYPE_DECL_AHEAD.match(text, start + len(name)) if back else None
                if not back or not ahead:
                    continue
                nested = not own and self._inside_class(path, text, start)
                kind = back.group(1).split()[0]
                if ahead.group(3) == ";":
                    forward = forward or TypeDecl(name, where, line_of(text, back.start(1)), "forward")
                    continue
                brace = ahead.end(3) - 1
                body = text[brace + 1:matching_brace(text, brace) - 1]
                bases = []
                if ahead.group(2):
                    for part in split_top(ahead.group(2)[1:]):
                        base = re.sub(r"\b(public|protected|private|virtual)\b", "", part).strip()
                        base = re.sub(r"<.*", "", base, flags=re.S).strip().split("::")[-1]
                        if base:
                            bases.append(base)
                decl = TypeDecl(name, where, line_of(text, back.start(1)), kind, bases, body)
                if nested:
                    # a type nested in a class (ISceneViewExtension::EPostProcessingPass) is named unqualified only
                    # in that class and its subclasses: a last resort, after the top-level declarations
                    nested_fallback = nested_fallback or [decl]
                else:
                    full.append(decl)
            if full:
                return full
            for m in namespace.finditer(text):
                body = text[m.end():matching_brace(text, m.end() - 1) - 1]
                namespaces.append(TypeDecl(name, where, line_of(text, m.start()), "namespace", body=body))
        if namespaces:
            return namespaces
        # 2. an alias, a delegate, a shader parameter struct
        delegate = re.compile(rf"\b((?:FUNC_)?DECLARE_\w*(?:DELEGATE|EVENT)\w*)\s*\(\s*(?:([\w:<>*& ]+?)\s*,\s*)?{esc}\s*[,)]")
        for path, text, own in sources:
            where = f"plugin:{path}" if own else path
            named = re.search(rf"^\s*#\s*define\s+(\w+)\s+{esc}\s*$", text, re.M)
            if named and not own:  # 5.5: #define UE_STRING_CLASS FString, then class UE_STRING_CLASS in a .h.inl
                inner = [d for d in self.find_types(named.group(1)) if d.kind != "forward"]
                if inner:
                    self.engine.consulted.add(path)  # the #define that names the class
                    return [TypeDecl(name, d.path, d.line, d.kind, d.bases, d.body) for d in inner]
            alias = re.search(rf"\busing\s+{esc}\s*=\s*([^;]+);", text) or re.search(
                rf"\btypedef\s+([^;]*?)\s*\b{esc}\s*;", text)
            if alias:
                return [TypeDecl(name, where, line_of(text, alias.start()), "alias", target=alias.group(1).strip())]
            for m in delegate.finditer(text):
                second = "RetVal" in m.group(1) or "EVENT" in m.group(1)
                if bool(m.group(2)) == second:  # the name is the first argument, or the second after a return type
                    return [TypeDecl(name, where, line_of(text, m.start()), "delegate")]
            uniform = re.search(rf"\b(?:BEGIN_\w*SHADER_PARAMETER_STRUCT\w*|DECLARE_\w*UNIFORM_BUFFER_STRUCT)\s*\(\s*"
                                rf"{esc}\b", text)
            if uniform:
                end = text.find("END_", uniform.end())
                return [TypeDecl(name, where, line_of(text, uniform.start()), "uniform",
                                 body=text[uniform.end():end if end > 0 else uniform.end()])]
        # 3. UE_DECLARE_LWC_TYPE(RotationMatrix, 44): FRotationMatrix, FRotationMatrix44d, FRotationMatrix44f
        lwc = re.fullmatch(r"F(\w+?)(\d*)([df]?)", name)
        if lwc:
            base = lwc.group(1)
            for path in self.engine.files_with(base):
                text = self.engine.text(path)
                declared = re.search(rf"\bUE_DECLARE_LWC_TYPE\s*\(\s*{re.escape(base)}\s*,", text)
                if declared:
                    return [TypeDecl(name, path, line_of(text, declared.start()), "alias", target=f"T{base}<double>")]
        if nested_fallback:
            return nested_fallback
        return [forward] if forward else []

    def resolve_alias(self, decl: TypeDecl | None, depth: int = 0) -> TypeDecl | None:
        """An alias's target type (``FVector`` -> ``TVector``, ``FPlatformProcess`` -> ``F<Platform>PlatformProcess``)."""
        while decl is not None and decl.kind == "alias" and depth < 8:
            base = core_type(decl.target)
            if not base or base == decl.name:
                return decl
            decl = self.find_type(base)
            depth += 1
        return decl

    def find_member(self, type_name: str, member: str, depth: int = 0) -> tuple[Hit, str] | None:
        """``member`` declared in the body of ``type_name`` (any of its definitions) or one of its bases: (where,
        declaration text)."""
        if depth > 10:
            return None
        first = self.resolve_alias(self.find_type(type_name))
        if first is None:
            return None
        decls = self.find_types(first.name) or [first]
        for decl in decls:
            found = self._member_of(decl, member, depth)
            if found:
                return found
        return None

    def _member_of(self, decl: TypeDecl, member: str, depth: int) -> tuple[Hit, str] | None:
        if decl.kind == "delegate":
            for delegate_class in ("TDelegate", "TMulticastDelegate", "TDelegateBase"):
                found = self.find_member(delegate_class, member, depth + 1)
                if found:
                    return found
            return None
        esc = re.escape(member)
        if decl.kind in ("enum", "namespace"):
            m = re.search(rf"(?:^|[\s,{{]){esc}\b\s*(?:=|,|$|\}})", decl.body, re.M) or re.search(
                rf"[\w>*&]\s+[*&]?{esc}\s*[(;=\[]", decl.body)
        else:
            # declarations at the class's own level: method bodies and nested blocks blanked out first
            m = None
            # the class's own level first (method bodies blanked out), then anonymous unions and structs inside
            for body in (shallow_body(decl.body), decl.body):
                m = re.search(rf"(?:[\w>*&]\s*[*&]|[\w>]\s)\s*{esc}\s*(?:\(|;|=|\[|\{{|:(?!:))", body) or re.search(
                    rf"\b\w+\s*\((?:[^()]|\([^()]*\))*?,\s*{esc}\s*\)", body) or re.search(  # SHADER_PARAMETER(T, Name)
                    rf"\busing\s+{esc}\s*=|\benum\s+(?:class\s+)?{esc}\b|\b(?:class|struct)\s+{esc}\b", body)
                if m:
                    break
        if m:
            start = m.start()
            head = decl.body[:start]
            stmt_start = max(head.rfind(";"), head.rfind("{"), head.rfind("}"), head.rfind(":\n")) + 1
            tail_end = decl.body.find(";", m.end())
            statement = decl.body[stmt_start:tail_end if tail_end > 0 else m.end()]
            text = self._file_text(decl.path)
            offset = text.find(decl.body) if text and decl.body else -1
            line = text.count("\n", 0, offset + start) + 1 if offset >= 0 else decl.line
            overloads = [line]
            if decl.kind not in ("enum", "namespace") and offset >= 0:
                shallow = shallow_body(decl.body)
                overloads = [text.count("\n", 0, offset + o.start()) + 1 for o in re.finditer(
                    rf"(?:[\w>*&]\s*[*&]|[\w>]\s)\s*{esc}\s*\(", shallow)] or [line]
            return Hit(decl.path, line, "member", overloads), statement
        for base in decl.bases:
            found = self.find_member(base, member, depth + 1)
            if found:
                return found
        return None

    def _file_text(self, where: str) -> str:
        if where.startswith("plugin:"):
            return self.plugin_files.get(where[len("plugin:"):], "")
        return self.engine.text(where)

    def find_out_of_class(self, owner: str, member: str) -> Hit | None:
        """``Owner::Member`` defined outside the class body (inline definitions in headers, .inl files)."""
        for path in self.engine.files_with(member):
            text = self.engine.text(path)
            m = re.search(rf"\b{re.escape(owner)}\s*(?:<[^;(){{}}]*>)?\s*::\s*{re.escape(member)}\s*\(", text)
            if m:
                return Hit(path, line_of(text, m.start()), "member")
        return None

    def find_function(self, name: str, namespace: str = "") -> Hit | None:
        """A free function declared (with a return type) in a header, inside ``namespace`` when given; or a
        function-like macro of that name."""
        decl = re.compile(rf"^[ \t]*(?:template\s*<[^;{{]*>\s*)?(?:[\w:<>,*&]+[ \t]+|[\w:<>,]+[*&][ \t]*)+"
                          rf"[*&]?{re.escape(name)}\s*(?:<[^;{{()]*>)?\s*\(", re.M)
        for path in self.engine.files_with(name):
            text = self.engine.text(path)
            for m in decl.finditer(text):
                head = text[m.start():m.end()]
                if re.match(r"\s*(return|else|new|delete|case|goto)\b", head):
                    continue
                if namespace and not self._inside_namespace(text, m.start(), namespace):
                    continue
                if self._inside_class(path, text, m.start()):
                    continue  # a method of some class, not the free function
                return Hit(path, line_of(text, m.start()), "declared")
            if not namespace:
                macro = re.search(rf"^\s*#\s*define\s+{re.escape(name)}\b", text, re.M)
                if macro:
                    return Hit(path, line_of(text, macro.start()), "macro")
        return None

    def _inside_class(self, path: str, text: str, pos: int) -> bool:
        spans = self._class_spans.get(path)
        if spans is None:
            spans = []
            for m in re.finditer(r"(?:^|[;{}\s])(?:class|struct)\s+[^;{}()]*?\{", text):
                spans.append((m.end() - 1, matching_brace(text, m.end() - 1)))
            self._class_spans[path] = spans
        return any(a < pos < b for a, b in spans)

    @staticmethod
    def _inside_namespace(text: str, pos: int, namespace: str) -> bool:
        parts = namespace.split("::")
        for m in re.finditer(r"\bnamespace\s+([\w:]+)\s*\{", text[:pos]):
            names = m.group(1).split("::")
            if names[-1] == parts[-1] and matching_brace(text, m.end() - 1) > pos:
                return True
        return False

    def find_macro_or_constant(self, name: str) -> Hit | None:
        """``#define NAME``, an enumerator ``NAME``, a constant or global variable declared ``... NAME`` ..."""
        for path in self.engine.files_with(name):
            text = self.engine.text(path)
            for pos in occurrences(text, name):
                start = text.rfind("\n", 0, pos) + 1
                end = text.find("\n", pos)
                line = text[start:end if end >= 0 else len(text)]
                before = line[:pos - start]
                after = line[pos - start + len(name):]
                if re.fullmatch(r"\s*#\s*define\s+", before):
                    return Hit(path, line_of(text, pos), "macro")
                if not before.strip() and re.match(r"\s*(?:=[^;]*?)?\s*(?:,|$|\})", after):
                    return Hit(path, line_of(text, pos), "enumerator")
                if re.search(r"\b(?:extern|static|constexpr|const)\b[^;(){}]*$", before) and re.match(r"\s*(?:=|;|\[)", after):
                    return Hit(path, line_of(text, pos), "constant")
        return None

    def find_ubt_definition(self, name: str) -> Hit | None:
        """A macro UnrealBuildTool defines on the compiler's command line (``WITH_EDITOR``)."""
        for path in self.engine.files_with(name, (".cs",)):
            text = self.engine.text(path)
            m = re.search(rf'"{re.escape(name)}=', text)
            if m:
                return Hit(path, line_of(text, m.start()), "ubt")
        return None

    def global_type(self, name: str) -> tuple[Hit, str] | None:
        """An engine global (``GEngine``): where it is declared ``extern`` and its type."""
        for path in self.engine.files_with(name):
            text = self.engine.text(path)
            m = re.search(rf"\bextern\s+(?:[A-Z0-9_]+_API\s+)?(?:class\s+|struct\s+)?([\w:<>]+)\s*([*&]?)\s*{name}\s*;",
                          text)
            if m:
                return Hit(path, line_of(text, m.start()), "declared"), m.group(1) + m.group(2)
        return None


def core_type(type_text: str) -> str:
    """The class a type expression names: ``const TArray<int>&`` -> ``TArray``, ``UE::Math::TVector<double>`` ->
    ``TVector``, ``class UEngine*`` -> ``UEngine``."""
    text = re.sub(r"\b(const|volatile|class|struct|typename|mutable|static|inline|constexpr)\b", " ", type_text)
    text = re.sub(r"<.*", "", text, flags=re.S).strip()
    text = text.rstrip("*& ").strip()
    return text.split("::")[-1].strip() if text else ""


def template_arg(type_text: str) -> str:
    """The first template argument: ``TSharedPtr<IPlugin>`` -> ``IPlugin``."""
    m = re.search(r"<(.*)>", type_text, re.S)
    return split_top(m.group(1))[0].strip() if m else ""


# ------------------------------------------------------------------------------------------------ the plugin
@dataclass
class Use:
    """One use of an engine symbol in the plugin."""

    kind: str
    name: str
    file: str
    line: int
    guard: str
    active: bool | None  # under the checked version: True, False (another version's branch), None (unknown)
    detail: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    kind: str
    name: str
    status: str  # ok | by-name | other-version | MISSING | DEPENDENCY | plugin | generated
    hit: Hit | None
    uses: list[Use]
    note: str = ""


class Plugin:
    """The plugin's sources and what they declare (so that its own names are not taken for engine symbols)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cpp: dict[str, str] = {}
        for path in sorted((root / "Source").rglob("*")):
            if path.suffix in (".h", ".cpp") and "ThirdParty" not in path.parts:
                self.cpp[path.relative_to(root).as_posix()] = strip_comments(path.read_text())
        self.build_cs = {p.relative_to(root).as_posix(): strip_comments(p.read_text())
                         for p in sorted((root / "Source").rglob("*.Build.cs"))}
        self.shaders = {p.relative_to(root).as_posix(): strip_comments(p.read_text())
                        for p in sorted((root / "Shaders").rglob("*")) if p.suffix in SHADER_EXTS}
        self.modules = {Path(p).name[: -len(".Build.cs")] for p in self.build_cs}
        self.headers = {Path(p).name for p in self.cpp if p.endswith(".h")}
        everything = "\n".join(self.cpp.values())
        code = blank_strings(everything)
        self.types = set(re.findall(r"\b(?:class|struct|enum(?:\s+class)?|union)\s+(?:[A-Z0-9_]+_API\s+)?(\w+)\s*"
                                    r"(?:final\s*)?[:{]", code))
        self.types |= set(re.findall(r"\busing\s+(\w+)\s*=", code))
        params = r"\((?:[^;{}()]|\((?:[^;{}()]|\([^()]*\))*\))*\)"
        # functions the plugin defines (name(...) { ...) and methods its headers declare (Type Name(...) ...;)
        self.functions = set(re.findall(rf"\b(\w+)\s*{params}\s*(?:const\s*)?(?:override\s*)?(?:->\s*[\w:<>]+\s*)?"
                                        r"(?::[^;{]*)?\{", code))
        for rel, text in self.cpp.items():
            if rel.endswith(".h"):
                self.functions |= set(re.findall(rf"\b(?!return\b|else\b|new\b|delete\b|case\b)[\w:<>]+[*&]?\s+[*&]?(~?\w+)\s*"
                                                 rf"{params}\s*(?:const\s*)?(?:override\s*)?(?:=\s*\w+\s*)?;",
                                                 blank_strings(text)))
        self.types |= set(re.findall(r"\bBEGIN_\w*SHADER_PARAMETER_STRUCT\w*\s*\(\s*(\w+)", code))
        self.variables = set(re.findall(r"\b(CVar\w+|G[A-Z]\w*)\s*(?:\(|=|\[|;)", code)) - {"GEngine"}
        self.defines = set(re.findall(r"#\s*define\s+(\w+)", everything))
        self.globals = {m.group(2): m.group(1) for m in re.finditer(
            r"\bextern\s+((?:const\s+)?[\w:]+(?:<[^;]*>)?[*&]?)\s+(\w+)\s*;", code)}
        self.declared_names: set[str] = set()  # every variable, parameter and member the plugin declares
        for text in self.cpp.values():
            self.declared_names |= set(variable_types(blank_strings(text)))
        self.enumerators: set[str] = set()
        for body in re.findall(r"\benum\s+(?:class\s+)?\w+\s*(?::\s*\w+\s*)?\{([^}]*)\}", code):
            self.enumerators |= set(re.findall(r"\b([A-Za-z_]\w*)\s*(?:=[^,]*)?(?:,|$)", body))

    def api_macros(self) -> set[str]:
        """``NEURALRENDERBRIDGE_API``: UnrealBuildTool defines one per module of the plugin."""
        return {module.upper() + "_API" for module in self.modules}

    def dependencies(self) -> dict[str, str]:
        """Module name -> the Build.cs (plugin-relative) that lists it."""
        out: dict[str, str] = {}
        for path, text in self.build_cs.items():
            for block in re.findall(r"(?:Public|Private)\w*ModuleNames\.(?:AddRange\((.*?)\)|Add\((.*?)\))\s*;",
                                    text, re.S):
                for name in re.findall(r'"(\w+)"', block[0] + block[1]):
                    out.setdefault(name, path)
        return out


def uses_in_cpp(plugin: Plugin, version: Version) -> list[Use]:
    """Every engine symbol the plugin's C++ uses, with the guard of each use."""
    uses: list[Use] = []
    own_types = plugin.types
    own_names = own_types | plugin.functions | plugin.variables | plugin.defines | plugin.enumerators | \
        plugin.declared_names
    for path, raw in plugin.cpp.items():
        guards = guards_by_line(raw)
        code = blank_strings(raw)
        lines = code.split("\n")
        var_types = variable_types(code)
        for path_h, text_h in plugin.cpp.items():  # members of the plugin's classes are visible in their methods
            if path_h.endswith(".h") and Path(path_h).stem == Path(path).stem and path_h != path:
                for name, entries in variable_types(blank_strings(text_h)).items():
                    var_types.setdefault(name, [(0, t) for _, t in entries])
        for name, type_text in plugin.globals.items():  # extern declarations in the plugin's other headers
            var_types.setdefault(name, [(0, type_text)])

        def add(kind: str, name: str, lineno: int, **detail: str) -> None:
            conds = guards[lineno] if lineno < len(guards) else []
            values = [evaluate_condition(c, version, frozenset(plugin.defines)) for c in conds]
            active: bool | None = False if any(v is False for v in values) else (
                None if any(v is None for v in values) else True)
            uses.append(Use(kind, name, path, lineno, " && ".join(conds), active, dict(detail)))

        # includes
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', raw, re.M):
            add("include", m.group(1), line_of(raw, m.start()))
        # macros in #if conditions
        for m in re.finditer(r"^\s*#\s*(?:if|elif)\b(.*)$", code, re.M):
            for name in re.findall(r"\b([A-Z][A-Z0-9_]{2,})\b", m.group(1)):
                if name not in plugin.defines and not name.startswith(NOT_ENGINE_PREFIXES):
                    add("macro", name, line_of(code, m.start()))
        # overrides
        for decl in re.finditer(r"\bvirtual\s+([^;{}]*?)\b(\w+)\s*\(([^;{}]*?)\)\s*(const\s*)?override\b", code):
            cls = enclosing_class(code, decl.start())
            if cls and not decl.group(1).strip().endswith("~"):  # destructors: every base has one
                add("override", f"{cls}::{decl.group(2)}", line_of(code, decl.start()), cls=cls,
                    method=decl.group(2), params=normalize_params(decl.group(3)), const=str(bool(decl.group(4))))
        # bases of the plugin's classes
        for m in re.finditer(r"(?<!enum )\b(?:class|struct)\s+(?:[A-Z0-9_]+_API\s+)?(\w+)\s*(?:final\s*)?:\s*([^{;]+)\{",
                             code):
            for base in split_top(m.group(2)):
                name = core_type(re.sub(r"\b(public|protected|private|virtual)\b", "", base))
                if name and name not in own_types:
                    add("type", name, line_of(code, m.start()))
        owner_of_line = method_owners(code)
        for lineno, line in enumerate(lines, start=1):
            if re.match(r"\s*#", line):
                continue
            scan_line(line, lineno, add, own_names, own_types, var_types, plugin, owner_of_line.get(lineno, ""))
    return uses


def method_owners(code: str) -> dict[int, str]:
    """Line -> the plugin class whose method (``Class::Method(...) {`` at the start of a line) contains it, so that
    an unqualified call there can be looked up among the class's engine bases (``IsTemplate()``)."""
    out: dict[int, str] = {}
    for m in re.finditer(r"^[^\s#][^;{}\n]*?\b(\w+)::~?\w+\s*\([^;\n]*$", code, re.M):
        brace = code.find("{", m.end())
        semicolon = code.find(";", m.end())
        if brace < 0 or 0 <= semicolon < brace and not re.match(r"\s*:", code[code.find(")", m.end()) + 1:]):
            continue
        end = matching_brace(code, brace)
        for line in range(line_of(code, m.start()), line_of(code, end) + 1):
            out[line] = m.group(1)
    return out


def normalize_params(params: str) -> str:
    """A parameter list without names and defaults: ``const FSceneView& InView, bool b = true`` ->
    ``const FSceneView&, bool``."""
    out = []
    for part in split_top(params):
        part = part.split("=")[0].strip()
        part = re.sub(r"\b(struct|class)\s+", "", part)
        if not part or part == "void":
            continue
        m = re.match(r"(.*?[\w>*&\]])\s*\b(\w+)\s*(\[[^\]]*\])?$", part, re.S)
        type_text = m.group(1) if m and m.group(1).strip() not in ("const", "unsigned", "signed") else part
        if m and not re.search(r"[\w>]", type_text):
            type_text = part
        type_text = re.sub(r"\s*([*&<>,])\s*", r"\1", type_text.strip())
        type_text = re.sub(r"\s+", " ", type_text)
        out.append(type_text)
    return ", ".join(out)


def enclosing_class(code: str, pos: int) -> str:
    best = ""
    for m in re.finditer(r"\b(?:class|struct)\s+(?:[A-Z0-9_]+_API\s+)?(\w+)\s*(?:final\s*)?(?::[^{;]*)?\{", code[:pos]):
        if matching_brace(code, m.end() - 1) > pos:
            best = m.group(1)
    return best


VarTypes = dict[str, list[tuple[int, str]]]


def variable_types(code: str) -> VarTypes:
    """Variable, parameter and member name -> where (line) and with which type text it was declared (best effort:
    the same name may be declared in several functions with different types; ``type_at`` picks the right one)."""
    out: VarTypes = {}
    decl = re.compile(r"(?<![\w.>:])((?:const\s+)?(?:[A-Za-z_]\w*\s*::\s*)*[A-Za-z_]\w*(?:\s*<(?:[^<>;(){}]|<[^<>;(){}]*>)*>)?)"
                      r"\s*(?:const\s*)?([&*]*)\s*(?:const\s+)?\b([A-Za-z_]\w*)\s*(?=[;,=)\[{:]|\((?![^)]*\)\s*(?:const\s*)?(?:override\s*)?\{))")
    for m in decl.finditer(code):
        type_text, ref, name = m.group(1), m.group(2), m.group(3)
        base = core_type(type_text)
        if not base or (base in CPP_KEYWORDS and base not in BUILTIN_TYPES) or name in CPP_KEYWORDS:
            continue
        out.setdefault(name, []).append((line_of(code, m.start(3)), type_text.strip() + ref))
    for m in re.finditer(r"\bfor\s*\(\s*(?:const\s+)?([\w:<>, ]+?)\s*([&*]*)\s*(\w+)\s*:", code):
        out.setdefault(m.group(3), []).append((line_of(code, m.start(3)), m.group(1) + m.group(2)))
    for m in re.finditer(r"((?:const\s+)?[\w:]+(?:<[^;(){}]*>)?)\s*\(\s*&\s*(\w+)\s*\)\s*\[", code):  # T (&Name)[N]
        out.setdefault(m.group(2), []).append((line_of(code, m.start(2)), m.group(1) + "[]"))
    for entries in out.values():
        entries.sort()
    return out


def type_at(types: VarTypes, name: str, line: int) -> str:
    """The type of ``name`` as declared last before ``line`` (else its first declaration: a class member)."""
    entries = types.get(name, [])
    before = [t for ln, t in entries if ln <= line]
    return before[-1] if before else (entries[0][1] if entries else "")


def is_ue_type_name(name: str) -> bool:
    """``FRHITexture``, ``EPixelFormat``, ``TArray``: a prefix letter, then a capital, some lower case, no ``_``
    (``ECVF_Default``, ``PF_R8G8B8A8`` and ``TexCreate_UAV`` are constants)."""
    return bool(re.fullmatch(r"[FUAIETS][A-Z0-9][A-Za-z0-9]*", name)) and any(c.islower() for c in name)


def scan_line(line: str, lineno: int, add: AddFn, own: set[str], own_types: set[str], var_types: VarTypes,
              plugin: Plugin, owner: str = "") -> None:
    """The engine symbols on one line of C++ (no directives, strings blanked)."""
    markup = re.match(r"\s*(UCLASS|USTRUCT|UENUM|UFUNCTION|UPROPERTY|UMETA)\s*\(", line)
    if markup:
        add("macro", markup.group(1), lineno)
        return
    line = re.sub(r"\b(UPROPERTY|UFUNCTION)\s*\((?:[^()]|\([^()]*\))*\)", r"\1", line)
    # qualified names: Owner::Member, UE::Namespace::Function
    consumed: set[int] = set()
    for m in re.finditer(r"\b((?:[A-Za-z_]\w*\s*(?:<(?:[^<>;()]|<[^<>;()]*>)*>)?\s*::\s*)+)([A-Za-z_]\w*)", line):
        parts = [core_type(p) for p in m.group(1).split("::") if p.strip()]
        parts = [p for p in re.split(r"\s*::\s*", re.sub(r"<(?:[^<>]|<[^<>]*>)*>", "", m.group(1))) if p]
        member = m.group(2)
        consumed.update(range(m.start(), m.end()))
        if not parts or parts[0] in ("std", "nrbglue") or parts[-1] in own_types or parts[0] in own_types:
            continue
        if parts[0] == "UE" and len(parts) >= 2:
            if is_ue_type_name(member) and not line[m.end():].lstrip().startswith("("):
                add("type", member, lineno, namespace="::".join(parts))
            else:
                add("function", "::".join(parts) + "::" + member, lineno, namespace="::".join(parts), function=member)
            continue
        owner = parts[-1]
        if is_ue_type_name(owner) or owner in UE_INT_TYPES:
            add("type", owner, lineno)
            add("member", f"{owner}::{member}", lineno, owner=owner, member=member)
    # chains through variables: Var.Member, Var->Member(...)->Member
    for root, root_suffix, steps in member_chains(line):
        if root == "this" or root.split("::")[0] in ("std", "nrbglue"):
            continue
        add("chain", root + "".join(f"{op}{name}" for op, name, _ in steps), lineno, root=root,
            root_suffix=root_suffix, root_type=type_at(var_types, root, lineno) if "::" not in root else "",
            steps=json.dumps(steps))
    # type names and functions
    for m in IDENT.finditer(line):
        if m.start() in consumed:
            continue
        name = m.group(0)
        before = line[:m.start()].rstrip()
        after = line[m.end():].lstrip()
        if before.endswith((".", "->", "::")) or name in own or name in CPP_KEYWORDS:
            continue
        if name.startswith(NOT_ENGINE_PREFIXES) or name in STD_MACROS:
            continue
        if name in plugin.api_macros():
            add("api-macro", name, lineno)
        elif is_ue_type_name(name) or name in UE_INT_TYPES:
            add("type", name, lineno)
        elif re.fullmatch(r"G[A-Z]\w*", name):
            add("global", name, lineno)
        elif re.fullmatch(r"[A-Z][A-Z0-9_]+", name) or re.fullmatch(r"[A-Z][A-Za-z0-9]*_\w+", name):
            if name in UHT_MARKUP or re.fullmatch(r"[A-Z][A-Z0-9_]+", name) and (
                    after.startswith("(") or not re.search(r"[a-z]", name)):
                add("macro", name, lineno)
            else:
                add("constant", name, lineno)
        elif re.match(r"(?:<[^;()]*>\s*)?\(", after) and name[0].isupper() and name not in STD_FUNCTIONS:
            if re.search(r"(?<!return)(?<!else)[\w>]\s*[*&]*\s*$", before) and not re.search(
                    r"\b(return|else|case|new|delete)\s*$", before):
                continue  # a declaration (Type Name(...)), not a call
            add("function", name, lineno, function=name, cls=owner)


Step = tuple[str, str, str]  # ('.' or '->', member, '' | 'call' | 'index')


def member_chains(line: str) -> list[tuple[str, str, list[Step]]]:
    """``a.b(x)->c[i].d`` -> ``(a, '', [('.', 'b', 'call'), ('->', 'c', 'index'), ('.', 'd', '')])``; a root may be a
    qualified call, ``IPluginManager::Get().FindPlugin(...)`` -> ``('IPluginManager::Get', 'call', [...])``."""
    chains: list[tuple[str, str, list[Step]]] = []
    qualified = re.compile(r"(?:[A-Za-z_]\w*\s*(?:<(?:[^<>;()]|<[^<>;()]*>)*>)?\s*::\s*)+[A-Za-z_]\w*")
    i, n = 0, len(line)
    while i < n:
        m = qualified.match(line, i) or IDENT.match(line, i)
        if not m or (i > 0 and (line[i - 1].isalnum() or line[i - 1] in "_.>:")):
            i = (m.end() if m else i + 1)
            continue
        root = re.sub(r"\s+", "", re.sub(r"<(?:[^<>]|<[^<>]*>)*>", "", m.group(0)))
        j, root_suffix = skip_suffixes(line, m.end())
        steps: list[Step] = []
        while True:
            op_m = re.match(r"\s*(\.|->)\s*([A-Za-z_]\w*)", line[j:])
            if not op_m:
                break
            j += op_m.end()
            j, suffix = skip_suffixes(line, j)
            steps.append((op_m.group(1), op_m.group(2), suffix))
        if steps:
            chains.append((root, root_suffix, steps))
        i = m.end()  # go on inside the call's arguments: they hold chains of their own
    return chains


def skip_suffixes(line: str, j: int) -> tuple[int, str]:
    """Skips a call's ``(...)`` or an index ``[...]`` (and template args before a call) at ``j``."""
    kind = ""
    while True:
        k = j
        while k < len(line) and line[k] == " ":
            k += 1
        if k < len(line) and line[k] in "([":
            close = {"(": ")", "[": "]"}[line[k]]
            depth, p = 0, k
            while p < len(line):
                if line[p] == line[k]:
                    depth += 1
                elif line[p] == close:
                    depth -= 1
                    if depth == 0:
                        break
                p += 1
            kind = "call" if line[k] == "(" else "index"
            j = p + 1
        else:
            return j, kind


# ------------------------------------------------------------------------------------------------ checking
class Checker:
    """Looks every use up in the engine tree."""

    def __init__(self, plugin: Plugin, engine: EngineTree, version: Version) -> None:
        self.plugin = plugin
        self.engine = engine
        self.version = version
        self.decls = Declarations(engine, plugin.cpp)
        self.module_build: dict[str, str | None] = {}
        self.shader_parent: dict[str, str] = {}

    # -- modules and includes
    def build_cs_of(self, module: str) -> str | None:
        if module not in self.module_build:
            matches = [f for f in self.engine.files if f.endswith(f"/{module}.Build.cs")]
            self.module_build[module] = matches[0] if matches else None
        return self.module_build[module]

    def module_of(self, rel: str) -> str | None:
        """The module owning an engine file: the nearest folder holding ``<Folder>.Build.cs``, or (in a subset
        without that Build.cs) the folder before ``Public``/``Classes``/``Internal``/``Private``."""
        parts = rel.split("/")
        for i in range(len(parts) - 1, 0, -1):
            folder = "/".join(parts[:i])
            if self.engine.exists(f"{folder}/{parts[i - 1]}.Build.cs"):
                return parts[i - 1]
        for i, part in enumerate(parts):
            if part in ("Public", "Classes", "Internal", "Private") and i > 0:
                return parts[i - 1]
        return None

    def reachable_modules(self) -> dict[str, str]:
        """Module -> how the plugin's module reaches its public headers (a direct dependency, or via a
        dependency's PublicDependencyModuleNames / PublicIncludePathModuleNames, transitively)."""
        deps = [m for m in self.plugin.dependencies() if m not in self.plugin.modules]
        reach: dict[str, str] = {m: "direct" for m in deps}
        todo = list(deps)
        while todo:
            module = todo.pop()
            build = self.build_cs_of(module)
            if build is None:
                continue
            self.engine.consulted.add(build)
            text = self.engine.text(build)
            for block in re.findall(r"Public(?:Dependency|IncludePath)ModuleNames\.(?:AddRange\((.*?)\)|Add\((.*?)\))"
                                    r"\s*;", text, re.S):
                for name in re.findall(r'"(\w+)"', block[0] + block[1]):
                    if name not in reach:
                        reach[name] = f"via {module}"
                        todo.append(name)
        return reach

    def check_include(self, include: str, reach: dict[str, str]) -> tuple[str, Hit | None, str]:
        if include.endswith(".generated.h"):
            return "generated", None, "written by UnrealHeaderTool"
        if include in self.plugin.headers or include.startswith("nrb/"):
            return "plugin", None, "the plugin's own (NrbLibrary: libnrb)" if include.startswith("nrb/") else ""
        matches = self.engine.suffix_matches(include)
        preferred = [p for p in matches if re.search(r"/(Public|Classes|Internal)/", p)] or matches
        if not preferred:
            return "MISSING", None, ""
        path = preferred[0]
        self.engine.consulted.add(path)
        module = self.module_of(path)
        if module is not None:
            build = self.build_cs_of(module)
            if build:
                self.engine.consulted.add(build)
        hit = Hit(path, 1, "file")
        if module is None or module in reach or module in self.plugin.modules:
            return "ok", hit, f"module {module} ({reach.get(module, 'own')})" if module else ""
        return "DEPENDENCY", hit, f"module {module} is not a dependency of the plugin's Build.cs"

    # -- C++ symbols
    def check_type(self, name: str) -> tuple[str, Hit | None, str]:
        decl = self.decls.find_type(name)
        if decl is None:
            return "MISSING", None, ""
        if decl.path.startswith("plugin:"):
            return "plugin", None, ""
        note = {"forward": "forward declaration only", "alias": f"= {decl.target}"}.get(decl.kind, decl.kind)
        return "ok", Hit(decl.path, decl.line, decl.kind), note

    def check_member(self, owner: str, member: str) -> tuple[str, Hit | None, str]:
        found = self.decls.find_member(owner, member)
        if found:
            self.engine.consulted.add(found[0].path)
            return "ok", found[0], ""
        hit = self.decls.find_out_of_class(owner, member)
        if hit:
            self.engine.consulted.add(hit.path)
            return "ok", hit, "defined out of class"
        decl = self.decls.resolve_alias(self.decls.find_type(owner))
        if decl is not None and decl.kind in ("enum", "namespace"):
            return "MISSING", None, f"{owner} has no enumerator {member}"
        # a namespace (ERHIFeatureLevel::SM5 is namespace ERHIFeatureLevel { enum Type { SM5 ... } })
        for path in self.engine.files_with(member):
            text = self.engine.text(path)
            ns = re.search(rf"\bnamespace\s+{re.escape(owner)}\s*\{{", text)
            if ns and re.search(rf"\b{re.escape(member)}\b", text[ns.end():matching_brace(text, ns.end() - 1)]):
                self.engine.consulted.add(path)
                return "ok", Hit(path, line_of(text, ns.start()), "namespace"), f"in namespace {owner}"
        return "MISSING", None, ""

    def check_override(self, use: Use) -> tuple[str, Hit | None, str]:
        cls, method, params = use.detail["cls"], use.detail["method"], use.detail["params"]
        own = self.decls.find_type(cls)
        if own is None:
            return "MISSING", None, f"{cls} not found"
        seen: list[str] = []
        for base in own.bases:
            found = self._virtual_in(base, method, params, seen, 0)
            if found:
                return "ok", found, ""
        return "MISSING", None, ("no virtual " + method + "(" + params + ") in the bases; they declare: " +
                                 "; ".join(seen) if seen else f"no virtual {method} in the bases")

    def _virtual_in(self, cls: str, method: str, params: str, seen: list[str], depth: int) -> Hit | None:
        decl = self.decls.resolve_alias(self.decls.find_type(cls))
        if decl is None or depth > 10:
            return None
        text = self.decls._file_text(decl.path)
        offset = text.find(decl.body) if decl.body else -1
        for m in re.finditer(rf"\bvirtual\s+[^;{{}}]*?\b{re.escape(method)}\s*\(([^;{{}}]*?)\)", decl.body):
            theirs = normalize_params(m.group(1))
            seen.append(f"{decl.name}::{method}({theirs})")
            if theirs == params:
                line = text.count("\n", 0, offset + m.start()) + 1 if offset >= 0 else decl.line
                if not decl.path.startswith("plugin:"):
                    self.engine.consulted.add(decl.path)
                return Hit(decl.path, line, "virtual")
        for base in decl.bases:
            found = self._virtual_in(base, method, params, seen, depth + 1)
            if found:
                return found
        return None

    def deprecation(self, hit: Hit) -> str:
        """``deprecated in 5.5: <message>`` when the declaration at ``hit`` carries UE_DEPRECATED (an override of a
        deprecated virtual compiles, with a warning, and is no longer called: 5.5's SubscribeToPostProcessingPass)."""
        if hit.path.startswith("plugin:") or not self.engine.exists(hit.path):
            return ""
        text = self.engine.text(hit.path)
        notes = [self._deprecated_at(text, line) for line in (hit.overloads or [hit.line])]
        # an overload set is deprecated only when every overload is (Lock(uint32) is, Lock(int32&, int32*) is not)
        return notes[0] if all(notes) else ""

    @staticmethod
    def _deprecated_at(text: str, line: int) -> str:
        line_start = 0
        for _ in range(line - 1):
            line_start = text.find("\n", line_start) + 1
        window = text[max(0, line_start - 400):line_start]
        found = ""
        for m in re.finditer(r'\bUE_DEPRECATED\s*\(\s*([\d.]+)\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)', window):
            if not re.search(r"[;{}]", window[m.end():]):
                found = f"deprecated in {m.group(1)}: {m.group(2)}"
        return found

    def check_function(self, use: Use) -> tuple[str, Hit | None, str]:
        cls = use.detail.get("cls", "")
        if cls:
            own = self.decls.find_type(cls)
            for base in own.bases if own is not None else []:
                found = self.decls.find_member(base, use.detail["function"])
                if found:
                    self.engine.consulted.add(found[0].path)
                    return "ok", found[0], f"member of {cls}'s base {base}"
        namespace = use.detail.get("namespace", "")
        hit = self.decls.find_function(use.detail["function"], namespace)
        if hit:
            self.engine.consulted.add(hit.path)
            return "ok", hit, hit.how if hit.how == "macro" else ""
        return "MISSING", None, ""

    def check_macro(self, name: str) -> tuple[str, Hit | None, str]:
        hit = self.decls.find_macro_or_constant(name)
        if hit:
            self.engine.consulted.add(hit.path)
            return "ok", hit, hit.how
        hit = self.decls.find_ubt_definition(name)
        if hit:
            self.engine.consulted.add(hit.path)
            return "ok", hit, "defined by UnrealBuildTool"
        return "MISSING", None, ""

    def check_api_macro(self, name: str) -> tuple[str, Hit | None, str]:
        for path in self.engine.files_with("ModuleApiDefine", (".cs",)):
            text = self.engine.text(path)
            m = re.search(r'ModuleApiDefine\s*=\s*Name\.ToUpperInvariant\(\)\s*\+\s*"_API"', text)
            if m:
                self.engine.consulted.add(path)
                return "ok", Hit(path, line_of(text, m.start()), "ubt"), "module API macro, defined by UnrealBuildTool"
        return "ok", None, "module API macro, defined by UnrealBuildTool (its sources are not in this tree)"

    def check_global(self, name: str) -> tuple[str, Hit | None, str]:
        found = self.decls.global_type(name)
        if found:
            self.engine.consulted.add(found[0].path)
            return "ok", found[0], found[1]
        return self.check_macro(name)

    def check_chain(self, use: Use) -> list[tuple[str, str, Hit | None, str]]:
        """Each member along ``root.a->b(...)``: (display name, status, hit, note)."""
        steps = json.loads(use.detail["steps"])
        type_text = use.detail["root_type"]
        root = use.detail["root"]
        if "::" in root:  # a qualified call or static member: its (return) type
            owner, member = root.rsplit("::", 1)
            owner = owner.split("::")[-1]
            if owner in self.plugin.types:
                found = self.decls.find_member(owner, member)
                type_text = self.member_type(found[1], member, use.detail["root_suffix"]) if found else ""
            elif is_ue_type_name(owner):
                found = self.decls.find_member(owner, member)
                type_text = self.member_type(found[1], member, use.detail["root_suffix"]) if found else ""
            if not type_text:
                return []
        if not type_text:
            found = self.decls.global_type(use.detail["root"]) if re.fullmatch(r"G[A-Z]\w*", use.detail["root"]) \
                else None
            if found:
                type_text = found[1]
        out: list[tuple[str, str, Hit | None, str]] = []
        qualifiers = re.sub(r"<.*", "", type_text, flags=re.S).split("::")[:-1]
        if any(q.strip().split()[-1] in self.plugin.types for q in qualifiers if q.strip()):
            return out  # a type nested in one of the plugin's (FNrbPackCS::FParameters): its members are the plugin's
        if type_text and not is_ue_type_name(core_type(type_text)) and not self._is_plugin_only(core_type(type_text)):
            return out  # libnrb's C structs, the standard library, plain values: not the engine's
        for op, member, suffix in steps:
            owner = self.deref(type_text, op) if type_text else ""
            if owner and not is_ue_type_name(owner) and not self._is_plugin_only(owner):
                break
            if not owner and not member[:1].isupper():
                break  # an unknown receiver's lower-case member: C or the standard library, not the engine
            if owner and self._is_plugin_only(owner):
                found = self.decls.find_member(owner, member)
                type_text = self.member_type(found[1], member, suffix) if found else ""
                continue
            if not owner or owner in ("auto",):
                status, hit, note = self.check_by_name(member)
                out.append((f"?{op}{member}", status, hit, note))
                type_text = ""
                continue
            found = self.decls.find_member(owner, member)
            if not found:
                out_of_class = self.decls.find_out_of_class(owner, member)
                if out_of_class:
                    out.append((f"{owner}::{member}", "ok", out_of_class, "defined out of class"))
                    self.engine.consulted.add(out_of_class.path)
                    type_text = ""
                    continue
                status, hit, note = self.check_by_name(member)
                out.append((f"{owner}::{member}", status, hit, (note + "; " if note else "") + f"not in {owner}'s body"))
                type_text = ""
                continue
            if not found[0].path.startswith("plugin:"):
                self.engine.consulted.add(found[0].path)
                out.append((f"{owner}::{member}", "ok", found[0], ""))
            type_text = self.member_type(found[1], member, suffix)
        return out

    def _is_plugin_only(self, type_name: str) -> bool:
        return type_name in self.plugin.types

    def check_by_name(self, member: str) -> tuple[str, Hit | None, str]:
        """The weakest check, for a receiver whose type the checker cannot follow: some engine header declares a
        member or function of that name."""
        for path in self.engine.files_with(member):
            text = self.engine.text(path)
            m = re.search(rf"[\w>*&]\s+\**{re.escape(member)}\s*(\(|;|=|\[)|,\s*{re.escape(member)}\s*\)|^\s*\w+\(\s*{re.escape(member)}\s*,", text, re.M)
            if m:
                self.engine.consulted.add(path)
                return "by-name", Hit(path, line_of(text, m.start()), "by-name"), "receiver type not followed"
        return "MISSING", None, "receiver type not followed"

    def deref(self, type_text: str, op: str) -> str:
        """The class whose members ``op`` reaches on a value of ``type_text``."""
        text = type_text.strip()
        pointer = text.endswith("*")
        core = core_type(text)
        decl = self.decls.find_type(core) if core else None
        if decl is not None and decl.kind == "alias" and not pointer:
            target = decl.target
            if core_type(target) in POINTER_WRAPPERS or target.endswith("*"):
                return self.deref(target, op)
        if op == "->":
            if pointer:
                return core
            if core in POINTER_WRAPPERS:
                return core_type(template_arg(text))
            arrow = self.operator_arrow(core)  # TAutoConsoleVariable<T>::operator->
            if arrow:
                return arrow
        return core

    def operator_arrow(self, type_name: str) -> str:
        """What ``operator->`` of ``type_name`` (or a base) returns, if it declares one."""
        for decl in self.decls.find_types(type_name):
            m = re.search(r"([\w:<>]+)\s*[*&]?\s*operator\s*->\s*\(", decl.body)
            if m:
                return core_type(m.group(1))
            for base in decl.bases:
                found = self.operator_arrow(base)
                if found:
                    return found
        return ""

    def member_type(self, statement: str, member: str, suffix: str) -> str:
        """The type of ``member`` (a field, or a method's return type) from its declaration statement, after
        ``suffix`` (a call, or an index into a container)."""
        parts = re.split(rf"\b{re.escape(member)}\b", statement, maxsplit=1)
        head = parts[0] if len(parts) == 2 else ""
        head = re.sub(r"\b(static|virtual|inline|FORCEINLINE|FORCENOINLINE|UE_NODISCARD|constexpr|explicit|friend|"
                      r"mutable|[A-Z0-9_]+_API|UPROPERTY\((?:[^()]|\([^()]*\))*\)|UFUNCTION\((?:[^()]|\([^()]*\))*\)|"
                      r"public:|private:|protected:)\b", " ", head)
        head = re.sub(r"\[\[[^\]]*\]\]", " ", head).strip()
        if suffix == "index":
            if core_type(head) in CONTAINERS:
                return template_arg(head)
            if "[" in parts[-1][:4]:
                return head
            return ""
        return head

    def run(self, uses: list[Use]) -> list[Result]:
        results: dict[tuple[str, str], Result] = {}
        reach = self.reachable_modules()
        self.engine.preferred_modules = set(reach)

        def record(kind: str, name: str, status: str, hit: Hit | None, note: str, use: Use) -> None:
            key = (kind, name)
            if key not in results:
                results[key] = Result(kind, name, status, hit, [], note)
            results[key].uses.append(use)

        for use in uses:
            if use.kind == "include":
                record("include", use.name, *self.check_include(use.name, reach), use)
            elif use.kind == "type":
                if use.name in self.plugin.types:
                    continue
                record("type", use.name, *self.check_type(use.name), use)
            elif use.kind == "member":
                if self._is_plugin_only(use.detail["owner"]):
                    continue
                record("member", use.name, *self.check_member(use.detail["owner"], use.detail["member"]), use)
            elif use.kind == "override":
                record("override", f"{use.name}({use.detail['params']})", *self.check_override(use), use)
            elif use.kind == "function":
                record("function", use.name, *self.check_function(use), use)
            elif use.kind in ("macro", "constant"):
                record(use.kind, use.name, *self.check_macro(use.name), use)
            elif use.kind == "api-macro":
                record("macro", use.name, *self.check_api_macro(use.name), use)
            elif use.kind == "global":
                record("global", use.name, *self.check_global(use.name), use)
            elif use.kind == "chain":
                for name, status, hit, note in self.check_chain(use):
                    record("member", name, status, hit, note, use)
        for module, build in self.plugin.dependencies().items():
            use = Use("module", module, build, 1, "", True)
            if module in self.plugin.modules:
                record("module", module, "plugin", None, "", use)
                continue
            path = self.build_cs_of(module)
            if path:
                self.engine.consulted.add(path)
            record("module", module, "ok" if path else "MISSING", Hit(path, 1, "module") if path else None, "", use)
        for result in self.check_shaders():
            key = (result.kind, result.name)
            if key in results:
                results[key].uses.extend(result.uses)
            else:
                results[key] = result
        final = list(results.values())
        for result in final:
            if result.status == "ok" and result.hit is not None and result.kind in ("override", "member", "function",
                                                                                   "type"):
                deprecated = self.deprecation(result.hit)
                if deprecated:
                    result.status = "DEPRECATED"
                    result.note = deprecated + (f"; {result.note}" if result.note else "")
        for result in final:
            if all(u.active is False for u in result.uses) and result.status not in ("plugin", "generated"):
                result.note = (f"used only for other engine versions ({result.uses[0].guard}); " +
                               ("also present here" if result.status == "ok" else f"here: {result.status}") +
                               (f"; {result.note}" if result.note else ""))
                result.status = "other-version"
        return sorted(final, key=lambda r: (r.kind, r.name))

    # -- shaders
    def shader_path(self, virtual: str) -> tuple[str, str]:
        """A virtual shader path -> ('engine'|'plugin'|'generated', path)."""
        if virtual.startswith("/Engine/Generated/"):
            return "generated", virtual
        if virtual.startswith("/Engine/"):
            return "engine", "Engine/Shaders/" + virtual[len("/Engine/"):]
        if virtual.startswith("/Plugin/NeuralRenderBridge/"):
            return "plugin", "Shaders/" + virtual[len("/Plugin/NeuralRenderBridge/"):]
        return "unknown", virtual

    def shader_closure(self, start: list[str]) -> list[str]:
        """Engine shader files reached through ``#include`` from ``start`` (engine-relative paths), breadth first;
        ``self.shader_parent`` remembers through which file each was reached (for --fetch-list)."""
        seen: list[str] = []
        todo = [(rel, "") for rel in start]
        while todo:
            rel, parent = todo.pop(0)
            if rel in seen or not self.engine.exists(rel):
                continue
            seen.append(rel)
            self.shader_parent.setdefault(rel, parent)
            for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', self.engine.text(rel), re.M):
                if inc.startswith("/"):
                    kind, path = self.shader_path(inc)
                    if kind == "engine":
                        todo.append((path, rel))
                else:
                    todo.append((os.path.normpath(os.path.join(os.path.dirname(rel), inc)).replace(os.sep, "/"), rel))
        return seen

    def consult_shader(self, rel: str) -> None:
        """Marks a shader file and the chain of includes that reaches it as needed."""
        while rel and rel not in self.engine.consulted:
            self.engine.consulted.add(rel)
            rel = self.shader_parent.get(rel, "")

    def check_shaders(self) -> list[Result]:
        results: list[Result] = []
        for path, text in self.plugin.shaders.items():
            code = blank_strings(text)
            includes = re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M)
            engine_files: list[str] = []
            for inc in includes:
                kind, rel = self.shader_path(inc)
                use = Use("shader-include", inc, path, line_of(text, text.find(inc)), "", True)
                if kind == "engine":
                    ok = self.engine.exists(rel)
                    if ok:
                        self.engine.consulted.add(rel)
                        engine_files.append(rel)
                    results.append(Result("shader-include", inc, "ok" if ok else "MISSING",
                                          Hit(rel, 1, "file") if ok else None, [use]))
                elif kind == "generated":
                    results.append(Result("shader-include", inc, "generated", None, [use], "generated by the engine"))
            closure = self.shader_closure(engine_files)
            own_functions = set(re.findall(r"^[\w<>]+\s+(\w+)\s*\(", code, re.M))
            own_names = own_functions | set(re.findall(r"^\s*(?:[\w<>]+\s+)+(\w+)\s*(?:\[\d*\])?\s*;", code, re.M))
            locals_ = dict(re.findall(r"\b([A-Z]\w+)\s+([A-Z]\w*)\s*=", code))  # FGBufferData GBuffer = ...
            calls = {m.group(1): line_of(code, m.start()) for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", code)}
            for name, lineno in calls.items():
                if name in HLSL_WORDS or name in own_functions or name in own_names or name.startswith("SV_"):
                    continue
                use = Use("shader-function", name, path, lineno, "", True)
                hit = self.shader_definition(name, closure)
                results.append(Result("shader-function", name, "ok" if hit else "MISSING", hit, [use],
                                      "" if hit else "not defined in any file the shader's includes reach"))
            for name in sorted(set(re.findall(r"\b([A-Z][A-Z0-9_]{3,})\b", code))):
                if re.fullmatch(r"TEXCOORD\d*|SV_\w+|COLOR\d*|POSITION\d*", name):
                    continue  # semantics
                use = Use("shader-macro", name, path, line_of(code, code.find(name)), "", True)
                hit = self.shader_definition(name, closure, macro=True)
                results.append(Result("shader-macro", name, "ok" if hit else "MISSING", hit, [use]))
            for var, member in sorted(set(re.findall(r"\b(\w+)\.([A-Za-z_]\w*)\b", code))):
                if var in SHADER_UNIFORM_BUFFERS:
                    owner = SHADER_UNIFORM_BUFFERS[var]
                    hit = self.uniform_member(owner, member)
                elif var in locals_ and locals_[var] not in own_names:
                    owner = locals_[var]
                    hit = self.shader_struct_member(owner, member, closure)
                else:
                    continue
                use = Use("shader-member", f"{var}.{member}", path, line_of(code, code.find(f"{var}.{member}")), "",
                          True)
                results.append(Result("shader-member", f"{owner}.{member}", "ok" if hit else "MISSING", hit, [use]))
        return results

    def shader_definition(self, name: str, closure: list[str], macro: bool = False) -> Hit | None:
        pattern = (rf"^\s*#\s*define\s+{name}\b" if macro else
                   rf"^[ \t]*(?:[\w<>]+[ \t]+)+{name}\s*\([^;]*?\)\s*(?:\:\s*\w+\s*)?\{{|^\s*#\s*define\s+{name}\b")
        for rel in closure:
            text = self.engine.text(rel)
            m = re.search(pattern, text, re.M)
            if m:
                self.consult_shader(rel)
                return Hit(rel, line_of(text, m.start()), "defined")
        return None

    def uniform_member(self, owner: str, member: str) -> Hit | None:
        for path in self.engine.files_with(owner):
            text = self.engine.text(path)
            if not re.search(rf"(?:BEGIN_\w*SHADER_PARAMETER_STRUCT\w*|DECLARE_\w*UNIFORM_BUFFER_STRUCT)\s*\(\s*{owner}\b",
                             text):
                continue
            m = re.search(rf"(?:VIEW_UNIFORM_BUFFER_MEMBER\w*|SHADER_PARAMETER\w*)\s*\((?:[^()]|\([^()]*\))*?,\s*"
                          rf"{re.escape(member)}\s*[,)]", text)
            if m:
                self.engine.consulted.add(path)
                return Hit(path, line_of(text, m.start()), "member")
        return None

    def shader_struct_member(self, owner: str, member: str, closure: list[str]) -> Hit | None:
        for rel in closure:
            text = self.engine.text(rel)
            m = re.search(rf"\bstruct\s+{owner}\s*\{{", text)
            if m and re.search(rf"\b{re.escape(member)}\s*(?:\[[^\]]*\])?\s*;",
                               text[m.end():matching_brace(text, m.end() - 1)]):
                self.consult_shader(rel)
                return Hit(rel, line_of(text, m.start()), "member")
        return None


# ------------------------------------------------------------------------------------------------ fetch list
def resolve_in_index(index: list[str], suffix: str) -> list[str]:
    """The path of ``suffix`` (an include) in a tree's path list, Public/Classes/Internal first."""
    found = [p for p in index if p == suffix or p.endswith("/" + suffix)]
    return [p for p in found if re.search(r"/(Public|Classes|Internal)/", p)][:1] or found[:1]


def fetch_list(plugin: Plugin, index: list[str] | None, manifest: list[str], engine: EngineTree | None,
               results: list[Result] | None) -> list[str]:
    """The engine files the check needs (see the module docstring):

    * with only a full tree (``engine`` without ``index``): exactly the files that gave an answer;
    * with a path list (``index``): the version header, the dependencies' Build.cs, the plugin's includes and shader
      includes as the list resolves them, and the recorded ``manifest`` (a full tree's answer for this plugin);
    * with a path list and a subset tree: also, for what the subset did not answer, the headers named after the
      missing types and the headers the plugin's includes include, for the next round.
    """
    out: set[str] = {VERSION_H}
    if engine is not None and index is None:
        return sorted(out | engine.consulted)
    out.update(manifest)
    if index is None:
        return sorted(out)
    for module in plugin.dependencies():
        out.update(p for p in index if p.endswith(f"/{module}.Build.cs"))
    direct: set[str] = set()
    for text in plugin.cpp.values():
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
            if not inc.endswith(".generated.h") and inc not in plugin.headers and not inc.startswith("nrb/"):
                direct.update(resolve_in_index(index, inc))
    out |= direct
    for text in plugin.shaders.values():
        for inc in re.findall(r'^\s*#\s*include\s+"(/Engine/[^"]+)"', text, re.M):
            out.add("Engine/Shaders/" + inc[len("/Engine/"):])
    if engine is not None and results is not None:
        out |= engine.consulted
        unanswered = [r for r in results if r.status in ("MISSING", "by-name")]
        for r in unanswered:
            # headers named after the type (FPlatformProcess: WindowsPlatformProcess.h, GenericPlatformProcess.h)
            owner = re.split(r"::|\.", r.name.lstrip("?"))[0]
            stem = owner[1:] if re.match(r"[FUAIET][A-Z]", owner) else owner
            if len(stem) >= 4:
                out.update(p for p in index if p.endswith(HEADER_EXTS) and "/Runtime/" in p and
                           p.rsplit("/", 1)[-1].split(".")[0].endswith(stem))
        if unanswered:  # and one level of #include further down from every file gathered so far
            for rel in engine.files:
                for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', engine.text(rel), re.M):
                    if inc.endswith(".generated.h"):
                        continue
                    if rel.endswith(SHADER_EXTS):
                        out.add("Engine/Shaders/" + inc[len("/Engine/"):] if inc.startswith("/Engine/") else
                                os.path.normpath(os.path.join(os.path.dirname(rel), inc)).replace(os.sep, "/"))
                    else:
                        out.update(p for p in resolve_in_index(index, inc) if "/Runtime/" in p)
    return sorted(out)


# ------------------------------------------------------------------------------------------------ main
def report(results: list[Result], version: Version, root: Path, verbose: bool) -> str:
    rows = []
    for r in results:
        where = r.hit.where() if r.hit else "-"
        rows.append((r.kind, r.name, where, r.status + (f" ({r.note})" if r.note else "")))
        if verbose:
            for u in r.uses:
                rows.append(("", f"  used at {u.file}:{u.line}", f"guard: {u.guard}" if u.guard else "", ""))
    widths = [max(len(row[i]) for row in rows + [("KIND", "SYMBOL", "WHERE", "STATUS")]) for i in range(3)]
    widths = [min(w, 70) for w in widths]
    lines = [f"Engine tree: {root} (version {version})", ""]
    header = ("KIND", "SYMBOL", "WHERE", "STATUS")
    for row in [header, *rows]:
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
    counts = summarize(results)
    lines.append("")
    lines.append(summary_line(counts))
    return "\n".join(lines)


def summarize(results: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {"total": len(results)}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def summary_line(counts: dict[str, int]) -> str:
    parts = [f"{counts.get(k, 0)} {label}" for k, label in (
        ("ok", "found"), ("by-name", "found by name only"), ("other-version", "for other engine versions"),
        ("plugin", "the plugin's own"), ("generated", "generated"), ("DEPENDENCY", "not reachable from Build.cs"),
        ("DEPRECATED", "DEPRECATED"), ("MISSING", "MISSING"))]
    return f"{counts['total']} symbols: " + ", ".join(parts)


def parse_version(text: str) -> Version:
    nums = [int(x) for x in text.split(".")] + [0, 0]
    return Version(nums[0], nums[1], nums[2])


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", type=Path, default=DEFAULT_PLUGIN, help="the plugin folder (.uplugin's)")
    parser.add_argument("--engine-source", type=Path, help="an engine source tree (full, or a subset)")
    parser.add_argument("--engine-version", help="the version to evaluate guards for (default: the tree's Version.h)")
    parser.add_argument("--fetch-list", action="store_true", help="print the engine files the check needs")
    parser.add_argument("--engine-index", type=Path, help="with --fetch-list: a file listing a tree's paths")
    parser.add_argument("--manifest", type=Path, help="with --fetch-list: the recorded list of a full tree's answer "
                        "(default: the plugin's Extras/EngineApi/ue-<--engine-version, 5.5>-files.txt)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="list every use under each symbol")
    args = parser.parse_args(list(argv) if argv is not None else None)

    plugin = Plugin(args.plugin)
    if args.engine_source is None and not args.fetch_list:
        parser.error("--engine-source is required (except with --fetch-list)")
    index = [line.strip() for line in args.engine_index.read_text().splitlines() if line.strip()] \
        if args.engine_index else None
    manifest_path = args.manifest or plugin.root / "Extras" / "EngineApi" / f"ue-{args.engine_version or '5.5'}-files.txt"
    manifest = [line.strip() for line in manifest_path.read_text().splitlines()
                if line.strip() and not line.startswith("#")] if manifest_path.is_file() else []
    if args.fetch_list and args.engine_source is None:
        if not manifest and index is None:
            print(f"no manifest {manifest_path} and no --engine-index: only {VERSION_H} is known", file=sys.stderr)
        print("\n".join(fetch_list(plugin, index, manifest, None, None)))
        return 0
    assert args.engine_source is not None
    engine = EngineTree(args.engine_source)
    version = parse_version(args.engine_version) if args.engine_version else engine.version()
    if version is None:
        parser.error(f"{VERSION_H} is not in {args.engine_source}: pass --engine-version")
    checker = Checker(plugin, engine, version)
    results = checker.run(uses_in_cpp(plugin, version))
    if args.fetch_list:
        print("\n".join(fetch_list(plugin, index, manifest, engine, results)))
        return 0
    print(report(results, version, args.engine_source, args.verbose))
    if args.json:
        args.json.write_text(json.dumps({
            "engine": str(args.engine_source), "version": str(version), "counts": summarize(results),
            "results": [{"kind": r.kind, "name": r.name, "status": r.status, "note": r.note,
                         "where": r.hit.where() if r.hit else None,
                         "uses": [f"{u.file}:{u.line}" for u in r.uses]} for r in results]}, indent=1))
    return 1 if any(r.status in FAILURES for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
