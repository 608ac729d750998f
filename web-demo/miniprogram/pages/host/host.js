// The host page (开播): the shared core logic, registered by this platform's layer.
var platform = require('../../platform/index');
var config = require('../../config');
var create = require('../../core/pages/host');

platform.definePage(create(platform, config));
