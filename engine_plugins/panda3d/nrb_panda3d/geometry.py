"""Procedural meshes (box, UV sphere, cylinder, plane) with normals and UVs, so the sample game needs no model files."""

from __future__ import annotations

import math

from panda3d.core import Geom, GeomNode, GeomTriangles, GeomVertexData, GeomVertexFormat, GeomVertexWriter


class _Mesh:
    def __init__(self, name: str) -> None:
        self.vdata = GeomVertexData(name, GeomVertexFormat.getV3n3t2(), Geom.UHStatic)
        self.vw = GeomVertexWriter(self.vdata, "vertex")
        self.nw = GeomVertexWriter(self.vdata, "normal")
        self.tw = GeomVertexWriter(self.vdata, "texcoord")
        self.tris = GeomTriangles(Geom.UHStatic)
        self.n = 0
        self.name = name

    def vertex(self, p: tuple[float, float, float], n: tuple[float, float, float], uv: tuple[float, float]) -> int:
        self.vw.addData3(*p)
        self.nw.addData3(*n)
        self.tw.addData2(*uv)
        self.n += 1
        return self.n - 1

    def tri(self, a: int, b: int, c: int) -> None:
        self.tris.addVertices(a, b, c)

    def node(self) -> GeomNode:
        geom = Geom(self.vdata)
        geom.addPrimitive(self.tris)
        node = GeomNode(self.name)
        node.addGeom(geom)
        return node


def box(sx: float = 1.0, sy: float = 1.0, sz: float = 1.0, name: str = "box") -> GeomNode:
    """Axis-aligned box centred on the origin with half-extents sx/2, sy/2, sz/2 (counter-clockwise outside)."""
    m = _Mesh(name)
    hx, hy, hz = sx / 2, sy / 2, sz / 2
    faces = [
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
        ((0, 1, 0), (-1, 0, 0), (0, 0, 1)), ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
        ((0, 0, 1), (1, 0, 0), (0, 1, 0)), ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
    ]
    for n, u, v in faces:
        idx = []
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = tuple((n[i] + su * u[i] + sv * v[i]) * (hx, hy, hz)[i] for i in range(3))
            idx.append(m.vertex(p, n, ((su + 1) / 2, (sv + 1) / 2)))
        m.tri(idx[0], idx[1], idx[2])
        m.tri(idx[0], idx[2], idx[3])
    return m.node()


def plane(sx: float, sy: float, name: str = "plane", uv_repeat: float = 1.0) -> GeomNode:
    """A horizontal rectangle in the XY plane facing +Z."""
    m = _Mesh(name)
    idx = [m.vertex((x * sx / 2, y * sy / 2, 0.0), (0, 0, 1), ((x + 1) / 2 * uv_repeat, (y + 1) / 2 * uv_repeat))
           for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    m.tri(idx[0], idx[1], idx[2])
    m.tri(idx[0], idx[2], idx[3])
    return m.node()


def sphere(radius: float = 0.5, rings: int = 12, segments: int = 20, name: str = "sphere") -> GeomNode:
    m = _Mesh(name)
    for r in range(rings + 1):
        phi = math.pi * r / rings
        for s in range(segments + 1):
            th = 2 * math.pi * s / segments
            n = (math.sin(phi) * math.cos(th), math.sin(phi) * math.sin(th), math.cos(phi))
            m.vertex(tuple(radius * c for c in n), n, (s / segments, r / rings))  # type: ignore[arg-type]
    row = segments + 1
    for r in range(rings):
        for s in range(segments):
            a, b = r * row + s, (r + 1) * row + s
            m.tri(a, b, b + 1)
            m.tri(a, b + 1, a + 1)
    return m.node()


def cylinder(radius: float = 0.5, height: float = 1.0, segments: int = 20, name: str = "cylinder") -> GeomNode:
    """Capped cylinder along +Z, base at z = 0."""
    m = _Mesh(name)
    for s in range(segments + 1):
        th = 2 * math.pi * s / segments
        c, sn = math.cos(th), math.sin(th)
        m.vertex((radius * c, radius * sn, 0.0), (c, sn, 0.0), (s / segments, 0.0))
        m.vertex((radius * c, radius * sn, height), (c, sn, 0.0), (s / segments, 1.0))
    for s in range(segments):
        a = 2 * s
        m.tri(a, a + 2, a + 3)
        m.tri(a, a + 3, a + 1)
    for z, nz in ((0.0, -1.0), (height, 1.0)):
        centre = m.vertex((0.0, 0.0, z), (0.0, 0.0, nz), (0.5, 0.5))
        first = m.n
        for s in range(segments + 1):
            th = 2 * math.pi * s / segments
            m.vertex((radius * math.cos(th), radius * math.sin(th), z), (0.0, 0.0, nz), (0.5, 0.5))
        for s in range(segments):
            if nz > 0:
                m.tri(centre, first + s, first + s + 1)
            else:
                m.tri(centre, first + s + 1, first + s)
    return m.node()
