// A scalar field on a G x G lattice drawn per pixel: bicubic or bilinear
// between the lattice values, or the nearest one for a matrix of cells, coloured through the ramps of src/engine/render/colormap.rs,
// with iso-value contour lines one pixel wide. src/engine/render/field.rs is
// this shader's reference and test oracle; the geometry and the rules are
// documented there.

struct Params {
    lo: f32,
    hi: f32,
    g: u32,
    bands: u32,
    map_id: u32,
    contour_alpha: f32,
    // 0: each pixel takes its cell's value; 1: bilinear; 2: Catmull-Rom bicubic
    interp: u32,
    _pad: u32,
};

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

const VIRIDIS = array<vec3<f32>, 9>(
    vec3<f32>(68.0, 1.0, 84.0),
    vec3<f32>(71.0, 44.0, 122.0),
    vec3<f32>(59.0, 81.0, 139.0),
    vec3<f32>(44.0, 113.0, 142.0),
    vec3<f32>(33.0, 144.0, 141.0),
    vec3<f32>(39.0, 173.0, 129.0),
    vec3<f32>(92.0, 200.0, 99.0),
    vec3<f32>(170.0, 220.0, 50.0),
    vec3<f32>(253.0, 231.0, 37.0),
);

const DIVERGING = array<vec3<f32>, 5>(
    vec3<f32>(33.0, 102.0, 172.0),
    vec3<f32>(146.0, 197.0, 222.0),
    vec3<f32>(247.0, 247.0, 247.0),
    vec3<f32>(244.0, 165.0, 130.0),
    vec3<f32>(178.0, 24.0, 43.0),
);

fn ramp(u: f32, map_id: u32) -> vec3<f32> {
    var n: u32 = 9u;
    if (map_id == 1u) {
        n = 5u;
    }
    let x = clamp(u, 0.0, 1.0) * f32(n - 1u);
    let i = min(u32(floor(x)), n - 2u);
    let f = x - f32(i);
    var a: vec3<f32>;
    var b: vec3<f32>;
    if (map_id == 1u) {
        a = DIVERGING[i];
        b = DIVERGING[i + 1u];
    } else {
        a = VIRIDIS[i];
        b = VIRIDIS[i + 1u];
    }
    return clamp(floor(a * (1.0 - f) + b * f + vec3<f32>(0.5)), vec3<f32>(0.0), vec3<f32>(255.0));
}

fn is_nan(v: f32) -> bool {
    // NaN is the only value not equal to itself
    return !(v == v);
}

fn value(i: u32, j: u32) -> f32 {
    return values[j * params.g + i];
}

// The field at lattice coordinates (x, y), clamped, bilinear.
fn field_at(x_in: f32, y_in: f32) -> f32 {
    let last = f32(params.g - 1u);
    let x = clamp(x_in, 0.0, last);
    let y = clamp(y_in, 0.0, last);
    let i = min(u32(floor(x)), params.g - 2u);
    let j = min(u32(floor(y)), params.g - 2u);
    let fx = x - f32(i);
    let fy = y - f32(j);
    let bottom = value(i, j) * (1.0 - fx) + value(i + 1u, j) * fx;
    let top = value(i, j + 1u) * (1.0 - fx) + value(i + 1u, j + 1u) * fx;
    return bottom * (1.0 - fy) + top * fy;
}

// The value of the lattice point whose cell holds (x, y), clamped.
fn field_nearest(x: f32, y: f32) -> f32 {
    let last = f32(params.g - 1u);
    let i = u32(clamp(floor(x + 0.5), 0.0, last));
    let j = u32(clamp(floor(y + 0.5), 0.0, last));
    return value(i, j);
}

fn catmull_rom(t: f32) -> vec4<f32> {
    let t2 = t * t;
    let t3 = t2 * t;
    return vec4<f32>(
        (-t3 + 2.0 * t2 - t) * 0.5,
        (3.0 * t3 - 5.0 * t2 + 2.0) * 0.5,
        (-3.0 * t3 + 4.0 * t2 + t) * 0.5,
        (t3 - t2) * 0.5,
    );
}

// The value at lattice point (i + a - 1, j + b - 1), indices clamped to the lattice.
fn around(i: u32, j: u32, a: u32, b: u32) -> f32 {
    let last = params.g - 1u;
    let ii = min(max(i + a, 1u) - 1u, last);
    let jj = min(max(j + b, 1u) - 1u, last);
    return value(ii, jj);
}

// The field at lattice coordinates (x, y), clamped, Catmull-Rom between the
// sixteen nearest points.
fn field_bicubic(x_in: f32, y_in: f32) -> f32 {
    let last = f32(params.g - 1u);
    let x = clamp(x_in, 0.0, last);
    let y = clamp(y_in, 0.0, last);
    let i = min(u32(floor(x)), params.g - 2u);
    let j = min(u32(floor(y)), params.g - 2u);
    let wx = catmull_rom(x - f32(i));
    let wy = catmull_rom(y - f32(j));
    var total = 0.0;
    for (var b = 0u; b < 4u; b = b + 1u) {
        let row = wx.x * around(i, j, 0u, b) + wx.y * around(i, j, 1u, b)
            + wx.z * around(i, j, 2u, b) + wx.w * around(i, j, 3u, b);
        total = total + wy[b] * row;
    }
    return total;
}

fn sample(x: f32, y: f32) -> f32 {
    if (params.interp == 2u) {
        return field_bicubic(x, y);
    }
    if (params.interp == 1u) {
        return field_at(x, y);
    }
    return field_nearest(x, y);
}

fn band(v: f32) -> i32 {
    let span = params.hi - params.lo;
    var u = 0.5;
    if (span > 0.0) {
        u = (v - params.lo) / span;
    }
    let c = f32(params.bands);
    return i32(clamp(floor(u * c), 0.0, c - 1.0));
}

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    // (0, 0) at the top-left corner of the viewport, (1, 1) at the bottom-right
    @location(0) uv: vec2<f32>,
};

// Two triangles covering the viewport (the callback's rectangle).
@vertex
fn vs_main(@builtin(vertex_index) k: u32) -> VertexOut {
    let corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0), vec2<f32>(0.0, 1.0),
    );
    let c = corners[k];
    var out: VertexOut;
    out.position = vec4<f32>(c.x * 2.0 - 1.0, 1.0 - c.y * 2.0, 0.0, 1.0);
    out.uv = c;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let g = f32(params.g);
    // lattice coordinates of this pixel's centre and one pixel's step in each
    // direction (the derivatives are taken before any branch)
    let x = in.uv.x * g - 0.5;
    let y = (1.0 - in.uv.y) * g - 0.5;
    let step_x = abs(dpdxFine(in.uv.x)) * g;
    let step_y = abs(dpdyFine(in.uv.y)) * g;
    let v = sample(x, y);
    var rgb = vec3<f32>(128.0, 128.0, 128.0);
    if (!is_nan(v)) {
        let span = params.hi - params.lo;
        var u = 0.5;
        if (span > 0.0) {
            u = (v - params.lo) / span;
        }
        rgb = ramp(u, params.map_id);
        if (params.bands > 1u) {
            let here = band(v);
            let right = sample(x + step_x, y);
            let below = sample(x, y - step_y);
            let cross_right = !is_nan(right) && band(right) != here;
            let cross_below = !is_nan(below) && band(below) != here;
            if (cross_right || cross_below) {
                let a = params.contour_alpha / 255.0;
                rgb = floor(rgb + (vec3<f32>(255.0) - rgb) * a + vec3<f32>(0.5));
            }
        }
    }
    return vec4<f32>(rgb / 255.0, 1.0);
}
