-- An independent reading of a one-shape "shapes" picture (tools/train/shapes.py's vocabulary), written for
-- the prompt-adherence tests: it knows nothing of the model, only what the pictures should look like.
--
--   background  the named colour nearest to the median of the 2-pixel border
--   foreground  the pixels further than 60 (RGB, 0..255) from the background; its largest 4-connected part
--   colour      the named colour nearest to the foreground's median
--   position    the foreground centroid: within 6 px of the middle on both axes "center", else the side it
--               is furthest towards
--   size        "large" when the bounding box's longer side is 24 px or more
--   shape       from the bounding-box fill ratio, the enclosed background (a ring's hole) and how the mass
--               sits between the upper and lower halves of the box (a triangle's apex is up):
--                 hole > 12% of the filled area: ring; fill > 0.88: square; > 0.66: circle;
--                 lower half > 62% of the mass: triangle; fill > 0.44: cross; else star
local M = {}

M.COLOURS = {
  { "red", 220, 35, 35 }, { "orange", 245, 140, 25 }, { "yellow", 245, 220, 40 }, { "green", 40, 165, 60 },
  { "blue", 35, 80, 215 }, { "purple", 135, 50, 175 }, { "white", 245, 245, 245 }, { "black", 20, 20, 20 },
}
M.SHAPES = { "circle", "square", "triangle", "star", "ring", "cross" }

local function nearest(r, g, b)
  local best, bd
  for _, c in ipairs(M.COLOURS) do
    local d = (r - c[2]) ^ 2 + (g - c[3]) ^ 2 + (b - c[4]) ^ 2
    if not bd or d < bd then best, bd = c[1], d end
  end
  return best
end

local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return 0.5 * (t[n // 2] + t[n // 2 + 1])
end

-- img: a 1 x 3 x H x W (or 3 x H x W) tensor in [-1, 1]. Returns a table {bg, colour, pos, size, shape,
-- fill, hole, lower, area} (colour .. shape nil when no foreground is found).
function M.read(img)
  local shape = img:shape()
  local H, W = shape[#shape - 1], shape[#shape]
  local v = img:table()
  local plane = H * W
  local function px(y, x) -- 0-based
    local i = y * W + x + 1
    return (v[i] + 1) * 127.5, (v[plane + i] + 1) * 127.5, (v[2 * plane + i] + 1) * 127.5
  end
  local br, bgc, bb = {}, {}, {}
  for y = 0, H - 1 do
    for x = 0, W - 1 do
      if y < 2 or y >= H - 2 or x < 2 or x >= W - 2 then
        local r, g, b = px(y, x)
        br[#br + 1], bgc[#bgc + 1], bb[#bb + 1] = r, g, b
      end
    end
  end
  local R0, G0, B0 = median(br), median(bgc), median(bb)
  local res = { bg = nearest(R0, G0, B0) }
  local fg = {}
  for y = 0, H - 1 do
    for x = 0, W - 1 do
      local r, g, b = px(y, x)
      fg[y * W + x] = ((r - R0) ^ 2 + (g - G0) ^ 2 + (b - B0) ^ 2) > 60 * 60
    end
  end
  -- largest 4-connected foreground part
  local label, best, bestn = {}, nil, 0
  for s = 0, H * W - 1 do
    if fg[s] and not label[s] then
      local stack, n = { s }, 0
      label[s] = s
      while #stack > 0 do
        local p = table.remove(stack)
        n = n + 1
        local y, x = p // W, p % W
        for _, q in ipairs { y > 0 and p - W or -1, y < H - 1 and p + W or -1, x > 0 and p - 1 or -1,
          x < W - 1 and p + 1 or -1 } do
          if q >= 0 and fg[q] and not label[q] then
            label[q] = s
            stack[#stack + 1] = q
          end
        end
      end
      if n > bestn then best, bestn = s, n end
    end
  end
  res.area = bestn
  if bestn < 8 then return res end
  local rs, gs, bs = {}, {}, {}
  local sx, sy, x0, x1, y0, y1 = 0, 0, W, -1, H, -1
  for p = 0, H * W - 1 do
    if label[p] == best then
      local y, x = p // W, p % W
      local r, g, b = px(y, x)
      rs[#rs + 1], gs[#gs + 1], bs[#bs + 1] = r, g, b
      sx, sy = sx + x + 0.5, sy + y + 0.5
      if x < x0 then x0 = x end
      if x > x1 then x1 = x end
      if y < y0 then y0 = y end
      if y > y1 then y1 = y end
    end
  end
  res.colour = nearest(median(rs), median(gs), median(bs))
  local cx, cy = sx / bestn, sy / bestn
  local dx, dy = cx - W / 2, cy - H / 2
  if math.max(math.abs(dx), math.abs(dy)) < 6 then
    res.pos = "center"
  elseif math.abs(dx) > math.abs(dy) then
    res.pos = dx < 0 and "left" or "right"
  else
    res.pos = dy < 0 and "top" or "bottom"
  end
  local bw, bh = x1 - x0 + 1, y1 - y0 + 1
  res.size = math.max(bw, bh) >= 24 and "large" or "small"
  -- enclosed background: box pixels not in the part and not reachable from the box's edge through non-part pixels
  local outside, stack = {}, {}
  for y = y0, y1 do
    for x = x0, x1 do
      local p = y * W + x
      if (y == y0 or y == y1 or x == x0 or x == x1) and label[p] ~= best and not outside[p] then
        outside[p] = true
        stack[#stack + 1] = p
      end
    end
  end
  while #stack > 0 do
    local p = table.remove(stack)
    local y, x = p // W, p % W
    for _, q in ipairs { y > y0 and p - W or -1, y < y1 and p + W or -1, x > x0 and p - 1 or -1,
      x < x1 and p + 1 or -1 } do
      if q >= 0 and label[q] ~= best and not outside[q] then
        outside[q] = true
        stack[#stack + 1] = q
      end
    end
  end
  local hole, lower = 0, 0
  local mid = (y0 + y1 + 1) / 2
  for y = y0, y1 do
    for x = x0, x1 do
      local p = y * W + x
      if label[p] == best then
        if y + 0.5 > mid then lower = lower + 1 end
      elseif not outside[p] then
        hole = hole + 1
      end
    end
  end
  res.fill = (bestn + hole) / (bw * bh)
  res.hole = hole / (bestn + hole)
  res.lower = lower / bestn
  if res.hole > 0.12 then
    res.shape = "ring"
  elseif res.fill > 0.88 then
    res.shape = "square"
  elseif res.fill > 0.66 then
    res.shape = "circle"
  elseif res.lower > 0.62 then
    res.shape = "triangle"
  elseif res.fill > 0.44 then
    res.shape = "cross"
  else
    res.shape = "star"
  end
  return res
end

-- Parses a full one-shape caption ("a small red circle at the top on a blue background").
function M.parse(caption)
  local t = {}
  for _, c in ipairs(M.COLOURS) do
    local name = c[1]
    if caption:find(" " .. name .. " background") then t.bg = name end
    if caption:find("^an? %a* ?" .. name .. " ") then t.colour = name end
  end
  for _, s in ipairs(M.SHAPES) do
    if caption:find(" " .. s .. "%f[%A]") then t.shape = s end
  end
  t.size = caption:find("^an? small ") and "small" or caption:find("^an? large ") and "large" or nil
  for pos, phrase in pairs { left = "on the left", right = "on the right", top = "at the top",
    bottom = "at the bottom", center = "in the center" } do
    if caption:find(phrase, 1, true) then t.pos = pos end
  end
  return t
end

return M
