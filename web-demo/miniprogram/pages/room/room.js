// The room page: the shared core logic, registered by this platform's layer.
var platform = require('../../platform/index');
var config = require('../../config');
var create = require('../../core/pages/room');

platform.definePage(create(platform, config));
