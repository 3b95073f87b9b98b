-- LÖVE settings for the host spec: no window, graphics or audio, so `love DIR` needs no display
-- or sound device (ALSOFT_DRIVERS=null keeps OpenAL quiet as well).
function love.conf(t)
  t.window = false
  for _, name in ipairs { "window", "graphics", "audio", "sound", "image", "font", "video",
                          "joystick", "keyboard", "mouse", "touch", "physics" } do
    t.modules[name] = false
  end
end
