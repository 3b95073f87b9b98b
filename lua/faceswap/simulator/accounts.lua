-- faceswap.simulator.accounts: the configured accounts (one per Discord channel) with their
-- credits, and the identities (faces saved with /saveid) of each, all in memory.
--
-- The accounts follow the `channels` setting: each channel listed there is an account, in that
-- order ("no channel" means the first one that still has credits). A channel that appears there
-- (at start, after a reset, or through POST /__sim/config) is seeded: a Discord token masked as
-- "ABC…secured…xyz", server 1000000000000000001, credits from credits_total/credits_used, and,
-- unless the setting seed_identity is "", one saved identity of that name (default "me") as its
-- default, so a headshot works at once as it always has in this simulator. An account added
-- with POST /account/<channel> starts as a real new one does: no credits used, no identity.
local util, images, S = require "faceswap.simulator.parts" ("util", "png", "state")

local M = {}

local array, now, iso_ms, nonempty = util.array, util.now, util.iso_ms, util.nonempty

local SEED_DISCORD = "ABCsimulated-discord-tokenxyz"
local SEED_SERVER = "1000000000000000001"
local SEED_IMAGE = images.make_png(images.PNG_SIZE, 230, 190, 160)

-- Discord tokens are shown by their first and last 3 characters only.
function M.mask(token)
  return token:sub(1, 3) .. "\u{2026}secured\u{2026}" .. token:sub(-3)
end

local function new_account(channel, discord, server, used)
  return { channel = channel, discord = discord, server = server,
           credits = { total = S.config.credits_total, used = used, at = now() },
           names = array {}, images = {}, default = nil }
end

-- Saves (or replaces) an identity; the first one saved becomes the default.
function M.save_identity(account, name, image)
  if not account.images[name] then account.names[#account.names + 1] = name end
  account.images[name] = image
  account.default = account.default or name
end

-- Deletes one identity; a deleted default passes to the first remaining one (or none).
function M.delete_identity(account, name)
  for i, n in ipairs(account.names) do
    if n == name then table.remove(account.names, i) break end
  end
  account.images[name] = nil
  if account.default == name then account.default = account.names[1] end
end

function M.delete_all(account)
  local n = #account.names
  account.names, account.images, account.default = array {}, {}, nil
  return n
end

-- Makes the accounts follow config.channels: new channels are seeded, missing ones dropped.
function M.sync()
  local accounts = S.state.accounts
  local listed = {}
  for _, channel in ipairs(S.config.channels) do
    listed[channel] = true
    if not accounts[channel] then
      local account = new_account(channel, SEED_DISCORD, SEED_SERVER, S.config.credits_used)
      if nonempty(S.config.seed_identity) then M.save_identity(account, S.config.seed_identity, SEED_IMAGE) end
      accounts[channel] = account
    end
  end
  for channel in pairs(accounts) do
    if not listed[channel] then accounts[channel] = nil end
  end
end

-- POST /__sim/config with credits_total or credits_used sets them on every account.
function M.set_credits(total, used)
  for _, account in pairs(S.state.accounts) do
    if total then account.credits.total = total end
    if used then account.credits.used = used end
    account.credits.at = now()
  end
end

function M.get(channel)
  return S.state.accounts[channel]
end

function M.list()
  local out = {}
  for i, channel in ipairs(S.config.channels) do out[i] = S.state.accounts[channel] end
  return out
end

function M.left(account)
  return account.credits.total - account.credits.used
end

function M.charge(account, credits)
  if credits > 0 then
    account.credits.used = account.credits.used + credits
    account.credits.at = now()
  end
end

-- The account a call without a channel goes to: the first with `cost` credits left, else the
-- first (which then answers 402).
function M.pick(cost)
  local list = M.list()
  for _, account in ipairs(list) do
    if M.left(account) >= cost then return account end
  end
  return list[1]
end

-- Adds or replaces an account (POST /account/<channel>).
function M.put(channel, discord, server)
  local account = S.state.accounts[channel]
  if account then
    account.discord, account.server = discord, server
    return account
  end
  account = new_account(channel, discord, server, 0)
  S.state.accounts[channel] = account
  S.config.channels[#S.config.channels + 1] = channel
  return account
end

function M.delete(channel)
  S.state.accounts[channel] = nil
  for i, c in ipairs(S.config.channels) do
    if c == channel then table.remove(S.config.channels, i) break end
  end
end

S.on_reset[#S.on_reset + 1] = M.sync

-- The account as GET /account/<channel> shows it.
function M.view(account)
  return { channel = account.channel, server = account.server, discord = M.mask(account.discord),
           credits = { timestamp = iso_ms(account.credits.at), total = account.credits.total,
                       used = account.credits.used } }
end

return M
